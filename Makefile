# vmctl: the two set-up commands are `make demo` and `make test` (Debian 12, as root).
# Both install what they need; re-running them is quick and harmless.

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
VMCTL   := $(VENV)/bin/vmctl
IMAGE   ?= debian-12
DEBS    := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev \
           pkg-config gcc python3-dev python3-venv mmdebstrap extlinux syslinux-common \
           e2fsprogs iproute2 dnsmasq-base iptables util-linux mount libxml2-utils \
           openssh-client

.PHONY: all deps venv runtime image demo test unit e2e lint clean

all: test

# Debian packages: apt runs only when one is missing.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	        --no-install-recommends $$missing; \
	fi

# The package itself, installed (not editable) so the templates ship as they would.
venv: deps
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check '.[test]'

runtime: venv
	$(VMCTL) hypervisor start

image: venv
	$(VMCTL) image build $(IMAGE)

demo: runtime image
	$(VMCTL) doctor
	$(VMCTL) up demo --image $(IMAGE)
	$(VMCTL) ssh demo -- 'uname -a && cloud-init status'
	$(VMCTL) ls

unit: venv
	$(VENV)/bin/pytest -q tests/unit

e2e: venv image
	$(VENV)/bin/pytest -q tests/e2e

lint: venv
	$(VENV)/bin/mypy vmctl

test: venv image
	$(VENV)/bin/mypy vmctl
	$(VENV)/bin/pytest -q -ra tests

clean:
	-$(VMCTL) hypervisor stop
	rm -rf $(VENV) build *.egg-info
