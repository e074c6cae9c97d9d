"""Debian 13 (trixie), built locally from the mirror, booted in both profiles.

Its cloud-init (25) runs every stage in one process that its units talk to over
sockets, and its docker.io leaves the CLI to docker-cli: the stock profile boots
the image as it is, the fast one runs the user's user-data through vmctl's own
units, and ``--docker`` installs a working engine. One VM at a time, each removed
when its test ends: a boot costs a minute here."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import vmctl, vmctl_json

IMAGE = "debian-13"
STOCK_VM, FAST_VM = "e2e-trixie-stock", "e2e-trixie-fast"
USER_DATA = """\
#cloud-config
write_files:
  - path: /etc/vmctl-e2e/early
    content: "init stage\\n"
  - path: /etc/vmctl-e2e/late
    content: "final stage\\n"
    defer: true
runcmd:
  - [sh, -c, "echo runcmd > /etc/vmctl-e2e/runcmd"]
"""


@pytest.fixture(scope="module")
def trixie(runtime: dict[str, Any]) -> dict[str, Any]:
    return dict(vmctl_json("image", "build", IMAGE))


@pytest.fixture(scope="module")
def user_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trixie") / "user-data.yaml"
    path.write_text(USER_DATA)
    return path


def _ssh(name: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return vmctl("ssh", name, "--", command, check=check)


def _is_trixie_with_user_data(name: str) -> None:
    """The guest is Debian 13, its user-data ran in every stage, cloud-init is clean
    (its schema accepts vmctl's cloud-config), and only vmctl's pinned host key exists."""
    assert "VERSION_CODENAME=trixie" in _ssh(name, "cat /etc/os-release").stdout.splitlines()
    files = _ssh(name, "cat /etc/vmctl-e2e/early /etc/vmctl-e2e/late /etc/vmctl-e2e/runcmd").stdout
    assert files == "init stage\nfinal stage\nruncmd\n"
    status = _ssh(name, "cloud-init status --long", check=False)
    assert status.returncode == 0 and "recoverable_errors: {}" in status.stdout, status.stdout
    schema = _ssh(name, "sudo cloud-init schema --system", check=False)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    keys = _ssh(name, "ls /etc/ssh/ | grep '^ssh_host_'").stdout.split()
    assert keys == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]


def test_trixie_builds_with_the_fast_profiles_files(trixie: dict[str, Any]) -> None:
    assert trixie["name"] == IMAGE and trixie["source"] == "build"
    assert trixie["kernel"] and trixie["lean_initrd"]  # the fast profile can boot it


def test_a_stock_trixie_vm_runs_its_own_cloud_init(trixie: dict[str, Any], user_data: Path) -> None:
    try:
        made = vmctl_json("up", STOCK_VM, "--image", IMAGE, "--profile", "stock", "--user-data", str(user_data))
        assert made["spec"]["profile"] == "stock"
        _is_trixie_with_user_data(STOCK_VM)
        # the image as it is: cloud-init's own single process ran its stages, and ended
        main = _ssh(STOCK_VM, "systemctl show -p Result -p ExecMainStatus -p ExecMainStartTimestampMonotonic "
                              "cloud-init-main.service").stdout.split()
        assert {"Result=success", "ExecMainStatus=0"} <= set(main)
        assert "ExecMainStartTimestampMonotonic=0" not in main  # it did start
        assert _ssh(STOCK_VM, "systemctl is-active cloud-final.service").stdout == "active\n"
    finally:
        vmctl("down", STOCK_VM, check=False)


@pytest.fixture(scope="module")
def fast_docker(trixie: dict[str, Any], user_data: Path) -> Iterator[dict[str, Any]]:
    try:
        yield vmctl_json("up", FAST_VM, "--image", IMAGE, "--profile", "fast", "--docker",
                         "--user-data", str(user_data))
    finally:
        vmctl("down", FAST_VM, check=False)


def test_a_fast_trixie_vm_runs_user_data_through_vmctls_units(fast_docker: dict[str, Any]) -> None:
    assert fast_docker["spec"]["profile"] == "fast"
    _is_trixie_with_user_data(FAST_VM)
    units = ("vmctl-cloud-init.service", "vmctl-cloud-config.service", "vmctl-cloud-final.service",
             "vmctl-ready.target")
    assert _ssh(FAST_VM, "systemctl is-active " + " ".join(units)).stdout.split() == ["active"] * len(units)
    # cloud-init's own units stayed masked: their single process never started
    masked = _ssh(FAST_VM, "systemctl is-enabled cloud-init-main.service cloud-init-network.service", check=False)
    assert masked.stdout.split() == ["masked-runtime", "masked-runtime"], masked.stdout


def test_a_fast_trixie_docker_host_runs_a_container(fast_docker: dict[str, Any]) -> None:
    version = _ssh(FAST_VM, "docker version --format '{{.Client.Version}} {{.Server.Version}}'").stdout.split()
    assert len(version) == 2 and all(v.startswith("26.") for v in version), version  # trixie's docker.io and CLI
    socket = vmctl("docker", "socket", FAST_VM).stdout.strip()
    ran = subprocess.run(["docker", "-H", f"unix://{socket}", "run", "--rm", "--network", "none",
                          "vmctl/busybox:latest", "echo", "a container on trixie"],
                         capture_output=True, text=True, timeout=300)
    assert (ran.returncode, ran.stdout) == (0, "a container on trixie\n"), ran.stderr
