# vmctl: the two set-up commands are `make demo` and `make test` (Debian 12, as root).
# Both install what they need; re-running them is quick and harmless.

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
VMCTL   := $(VENV)/bin/vmctl
IMAGE   ?= debian-12
DEBS    := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients libvirt-dev \
           pkg-config gcc python3-dev python3-venv mmdebstrap extlinux syslinux-common \
           e2fsprogs iproute2 dnsmasq-base dnsmasq-utils iptables util-linux mount libxml2-utils \
           openssh-client openssh-server debian-archive-keyring docker.io docker-compose curl

.PHONY: all deps venv runtime image demo test unit e2e lint lab bench clean

all: test

# Debian packages: apt runs only when one is missing (docker.io: the CLI, no daemon started).
deps:
	@scripts/install-debs $(DEBS)

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
	$(VMCTL) up demo --image $(IMAGE) --docker
	$(VMCTL) ssh demo -- 'uname -a && systemctl is-active vmctl-ready.target && docker info --format "Docker {{.ServerVersion}}"'
	$(VMCTL) docker env demo
	DOCKER_HOST=unix://$$($(VMCTL) docker socket demo) docker run --rm --network none vmctl/busybox:latest \
	    echo "hello from a container on the Docker host VM 'demo'"
	$(VMCTL) ls

unit: venv
	$(VENV)/bin/pytest -q tests/unit

e2e: venv image
	$(VENV)/bin/pytest -q tests/e2e

# Static checks: types (mypy --strict) and ruff (lint rules and import order, pyproject.toml).
lint: venv
	$(VENV)/bin/mypy vmctl
	$(VENV)/bin/ruff check vmctl tests benchmarks

test: lint image
	$(VENV)/bin/pytest -q -ra tests

# The boot lab as docs/lab.md ran it (about 12 minutes under TCG). For the host's
# container numbers, point DOCKER_HOST at a Docker Engine first (docs/lab.md).
lab: runtime image
	@$(VMCTL) image ls --json | $(VENV)/bin/python -c 'import json, sys; \
	    sys.exit(not any(i["name"] == "$(IMAGE)-docker" and not i["stale"] for i in json.load(sys.stdin)))' || \
	    { $(VMCTL) image rm --force $(IMAGE)-docker 2>/dev/null; $(VMCTL) image bake $(IMAGE)-docker --from-image $(IMAGE) --docker; }
	$(VMCTL) lab boot --runs 3 --profile stock --profile fast --image $(IMAGE)-docker \
	    --containers 5 --warm --json docs/lab.json --plot docs/lab.png

# Start-up cost of the CLI and of the ProxyCommand helper (figures in the README).
bench: venv
	$(VENV)/bin/python benchmarks/cli_startup.py

clean:
	-$(VMCTL) hypervisor stop
	rm -rf $(VENV) build *.egg-info
