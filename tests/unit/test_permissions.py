"""The permission model: nothing of a guest is readable by another local user."""

from __future__ import annotations

import grp
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmctl._core.paths import RuntimePaths, closed_ancestor, private_dir, private_machines_dir, qemu_gid
from vmctl._core.render import render
from vmctl.errors import ConfigError
from vmctl.hypervisor.disks import create_overlay
from vmctl.hypervisor.runtime import KVM_DEVICE, Runtime
from vmctl.machines.host import Host
from vmctl.model.record import Record
from vmctl.model.spec import MachineSpec


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def passable(tmp_path: Path) -> Iterator[Path]:
    """A directory every user may pass through (pytest's own tmp_path is under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="vmctl-unit-", dir="/var/tmp"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path)


def test_state_directories_are_private_but_passable_for_qemu(tmp_path: Path) -> None:
    loose = tmp_path / "state"
    loose.mkdir(mode=0o755)
    private_dir(loose)
    if qemu_gid() is None:
        assert mode(loose) == 0o700
    else:
        assert mode(loose) == 0o710 and loose.stat().st_gid == qemu_gid() and loose.stat().st_uid == 0


def test_a_state_directory_qemu_cannot_reach_is_refused_before_any_vm(passable: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if qemu_gid() is None:
        pytest.fail("the libvirt-qemu user is missing: install libvirt-daemon-system (make deps)")
    closed = passable / "closed"
    closed.mkdir(mode=0o700)
    monkeypatch.setenv("VMCTL_STATE_DIR", str(closed / "state"))
    with pytest.raises(ConfigError, match=f"cannot reach .*: {closed} is closed to it"):
        private_machines_dir()
    os.chmod(closed, 0o711)
    assert private_machines_dir() == closed / "state" / "machines"


def test_closed_ancestor_reads_owner_group_and_other_bits(passable: Path) -> None:
    d = passable / "a" / "b"
    d.mkdir(parents=True)
    os.chmod(passable / "a", 0o710)
    os.chown(passable / "a", 0, 4242)
    assert closed_ancestor(d / "c", 1234, {4242}) is None  # the group may pass
    assert closed_ancestor(d / "c", 1234, {99}) == passable / "a"  # others may not
    os.chown(passable / "a", 1234, 0)
    os.chmod(passable / "a", 0o070)
    assert closed_ancestor(d / "c", 1234, {0}) == passable / "a"  # the owner's bits count for the owner


def test_an_overlay_is_private_from_the_first_byte(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    os.system(f"qemu-img create -q -f qcow2 {base} 64M")
    overlay = create_overlay(base, tmp_path / "vm.qcow2", 1)
    assert mode(overlay) == 0o600
    stale = tmp_path / "stale.qcow2"  # a leftover of an interrupted up, world-readable
    stale.write_bytes(b"x")
    os.chmod(stale, 0o644)
    assert mode(create_overlay(base, stale)) == 0o600


def test_guests_run_as_the_unprivileged_qemu_user() -> None:
    conf = render("runtime/qemu.conf.j2", sock_dir="/s", log_dir="/l", qemu_user="libvirt-qemu")
    assert 'user = "libvirt-qemu"' in conf and 'group = "libvirt-qemu"' in conf
    assert "dynamic_ownership = 1" in conf


def test_the_runtime_gives_the_qemu_user_the_kvm_node_udev_would(tmp_path: Path) -> None:
    """Without udev /dev/kvm is 0600 root:root; libvirt then re-probes QEMU on every lookup."""
    runtime = Runtime(RuntimePaths(tmp_path), netns="unused")
    device = os.stat(KVM_DEVICE)
    kvm = grp.getgrnam("kvm").gr_gid
    node = runtime._kvm_node()
    if device.st_gid == kvm and device.st_mode & 0o060 == 0o060:
        assert node is None  # udev's node already serves
        return
    assert node is not None and node.is_char_device() and node.stat().st_rdev == device.st_rdev
    assert mode(node) == 0o660 and node.stat().st_gid == kvm
    assert f"mount --bind {node} {KVM_DEVICE}" in runtime._start_script()
    assert stat.S_IMODE(os.stat(KVM_DEVICE).st_mode) == stat.S_IMODE(device.st_mode)  # the host's is untouched


def test_a_state_directory_that_is_a_symlink_is_refused(passable: Path) -> None:
    """Root would otherwise chmod/chown what it points to (a planted link under /var/tmp)."""
    target = passable / "etc-like"
    target.mkdir(mode=0o755)
    link = passable / "state"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="is not a directory of this user's"):
        private_dir(link)
    assert mode(target) == 0o755


def test_down_releases_every_lease_of_the_vm_s_mac() -> None:
    """A baked VM came back with a new machine-id, so a new DHCP client ID and a second lease."""
    class FakeHV:
        def network_bridge(self, name: str) -> str:
            return "vmctlbr0"

        def leases(self, network: str, mac: str) -> list[dict[str, str]]:
            return [{"ipaddr": "192.168.150.10", "clientid": "ff:00:01"},
                    {"ipaddr": "192.168.150.11", "clientid": "ff:00:02"}]

    host = Host.__new__(Host)
    host.netns, host.hv = "ns", FakeHV()  # type: ignore[assignment]
    record = Record(MachineSpec("web"), "debian", "ssh-ed25519 AAAA", "52:54:00:00:00:01", "iid", "/d", "/s", "/l",
                    "tcg")
    assert host._leases(record) == [["vmctlbr0", "192.168.150.10", "52:54:00:00:00:01", "ff:00:01"],
                                    ["vmctlbr0", "192.168.150.11", "52:54:00:00:00:01", "ff:00:02"]]
