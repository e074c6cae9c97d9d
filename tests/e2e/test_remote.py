"""A VM on a second hypervisor host, reached only through its libvirt URI and its sshd
(see :mod:`tests.e2e.hosts`): any step of ``up`` or ``down`` that took a client path for a
hypervisor path fails, since the host's storage is visible only in its mount namespace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmctl as vmctl_api
from vmctl.machines.storage import IMAGES_POOL, MACHINES_POOL, VERIFIED

from .conftest import IMAGE, vmctl, vmctl_json
from .hosts import SecondHost

REMOTE_VM = "e2e-remote"


@pytest.fixture(scope="module")
def second_host(runtime: dict[str, Any]) -> Iterator[dict[str, Any]]:
    host = SecondHost("h2")
    try:
        uri = host.start()
        yield {"uri": uri, "state": host.state, "namespace": host.namespace}
    finally:
        if host.uri:
            vmctl("--connect", host.uri, "down", REMOTE_VM, check=False)
        host.close()


@pytest.fixture(scope="module")
def remote_vm(second_host: dict[str, Any]) -> Iterator[dict[str, Any]]:
    uri = second_host["uri"]
    try:
        made = vmctl_json("--connect", uri, "up", REMOTE_VM, "--image", IMAGE, "--disk", "6")
        print(f"\nup on the second host (base image uploaded first): {made['timings']}")  # for docs/pools.md
        yield made
    finally:
        vmctl("--connect", uri, "down", REMOTE_VM, check=False)


def test_the_vms_disks_are_the_second_hosts_volumes_not_files_here(
    second_host: dict[str, Any], remote_vm: dict[str, Any]
) -> None:
    for path in (remote_vm["disk"], remote_vm["seed"], remote_vm["serial_log"]):
        assert path.startswith("/var/lib/libvirt/images/vmctl/machines/"), path
        assert not Path(path).exists()  # only inside the second host's mount namespace
    cached = next(row for row in vmctl_json("image", "ls") if row["name"] == IMAGE)
    with vmctl_api.connect(second_host["uri"]) as host:
        base = host.hv.volume(IMAGES_POOL, Path(cached["path"]).name)
        assert base is not None and host.hv.volume(IMAGES_POOL, base.name + VERIFIED) is not None
        assert host.hv.volume_sha256(IMAGES_POOL, base.name) == cached["sha256"]  # uploaded, read back
        disk = host.hv.volume(MACHINES_POOL, f"{REMOTE_VM}.qcow2")
        assert host.hv.network_active("vmctl")  # defined by up: the host had none
    assert disk is not None and disk.path == remote_vm["disk"] and disk.capacity == 6 << 30


def test_the_guest_is_reached_through_the_hosts_sshd_with_both_keys_checked(
    second_host: dict[str, Any], remote_vm: dict[str, Any]
) -> None:
    uri = second_host["uri"]
    # vmctl's own connection (paramiko through the hypervisor) ran up's SSH phases; OpenSSH
    # (vmctl ssh: ssh -W through the same sshd) gets the same guest, its pinned key checked
    out = vmctl("--connect", uri, "ssh", REMOTE_VM, "--", "hostname; df -B1 --output=size / | tail -1").stdout
    name, size = out.split()
    assert name == REMOTE_VM
    assert int(size) > 5 << 30  # the guest grew its own partition: the host could not reach the overlay
    assert vmctl_json("--connect", uri, "inspect", REMOTE_VM)["state"] == "running"
    assert [row["name"] for row in vmctl_json("--connect", uri, "ls")] == [REMOTE_VM]


def test_down_deletes_the_volumes_on_the_second_host(second_host: dict[str, Any], remote_vm: dict[str, Any]) -> None:
    uri = second_host["uri"]
    vmctl("--connect", uri, "down", REMOTE_VM)
    with vmctl_api.connect(uri) as host:
        assert not host.hv.exists(REMOTE_VM)
        assert [v for v in (f"{REMOTE_VM}.qcow2", f"{REMOTE_VM}.seed.iso", f"{REMOTE_VM}.serial.log")
                if host.hv.volume(MACHINES_POOL, v) is not None] == []


def test_doctor_checks_the_second_host_itself(second_host: dict[str, Any], remote_vm: dict[str, Any]) -> None:
    """Every check runs there; the accelerator is that host's verdict, found by booting the
    probe kernel there (uploaded into its images pool): KVM hangs on this machine, TCG boots."""
    done = vmctl("--connect", second_host["uri"], "doctor", "--json", "--reprobe", check=False)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["ssh", "qemu", "libvirt", "network", "storage pool", "accelerator"]
    assert done.returncode == 0 and report["ok"], report
    assert checks["ssh"]["detail"].startswith("root@[127.0.0.1]:") and "Linux" in checks["ssh"]["detail"]
    assert checks["qemu"]["detail"].startswith("QEMU emulator version")
    assert "/var/lib/libvirt/images/vmctl/machines" in checks["storage pool"]["detail"]
    assert report["accel"] == remote_vm["accel"] == "tcg"
    assert [(p["accel"], p["ok"]) for p in report["probes"]] == [("kvm", False), ("tcg", True)]


@pytest.mark.parametrize(("args", "what"), [
    (["clone", REMOTE_VM, "e2e-remote-copy"], "clone"),
    (["image", "bake", "e2e-remote-baked", "--from-image", IMAGE], "bake"),
    (["image", "test", IMAGE], "image test"),
])
def test_commands_that_work_on_the_hypervisors_files_are_refused_there(
    second_host: dict[str, Any], args: list[str], what: str
) -> None:
    done = vmctl("--connect", second_host["uri"], *args, check=False)
    assert done.returncode == 1 and f"error: {what} needs the hypervisor on this machine, not qemu+ssh://" \
        in done.stderr, done.stderr
    with vmctl_api.connect(second_host["uri"]) as host:
        assert [m for m in host.hv.domains() if m != REMOTE_VM] == []
