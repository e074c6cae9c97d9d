"""A second hypervisor host, reached only through its libvirt URI and its sshd.

The host is a second vmctl runtime, in its own network namespace; its libvirt
paths (so the storage pools vmctl makes there, under /var/lib/libvirt/images/vmctl)
exist only inside its daemons' mount namespace. An OpenSSH sshd runs in that
network and mount namespace, as a host's own sshd would, and this machine reaches
it on 127.0.0.1 (a forward into the namespace: nothing is linked to the outside).
libvirt is reached with ``qemu+ssh://`` (OpenSSH's ssh, told by a wrapper to use this
test's known_hosts; libvirt's libssh transport hangs on large replies); guests through
that sshd (``direct-tcpip``, the hypervisor's host key checked, the guest's pinned).
The pools that runtime's own start made are removed first, so ``up`` defines its
pools on that host as on any remote one, in directories this process cannot see:
any step of ``up`` or ``down`` that took a client path for a hypervisor path fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmctl as vmctl_api
from vmctl._core import netns
from vmctl._core.relay import Forward
from vmctl.machines.storage import IMAGES_POOL, MACHINES_POOL, VERIFIED

from .conftest import IMAGE, VMCTL, vmctl, vmctl_json

REMOTE_VM = "e2e-remote"
SSHD = "/usr/sbin/sshd"


def _second_runtime(state: Path, namespace: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "VMCTL_STATE_DIR": str(state), "VMCTL_NETNS": namespace}
    done = subprocess.run([*VMCTL, "hypervisor", *args, "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _sshd_config(d: Path) -> Path:
    for key in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"e2e-{key}", "-f", str(d / key)],
                       check=True)
    shutil.copy(d / "client.pub", d / "authorized_keys")
    config = d / "sshd_config"
    config.write_text(f"ListenAddress 127.0.0.1:22\nHostKey {d}/host\nPidFile {d}/sshd.pid\n"
                      f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
                      "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                      "AllowTcpForwarding yes\nLogLevel ERROR\n"
                      # its files sit under /var/tmp, which is world-writable: ownership checks would refuse them
                      "StrictModes no\n")
    return config


@pytest.fixture(scope="module")
def second_host(runtime: dict[str, Any]) -> Iterator[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="vmctl-e2e-host2-", dir="/var/tmp"))
    namespace = f"vmctl-h2-{os.getpid()}"
    sshd, forward, uri = None, None, ""
    try:
        status = _second_runtime(state, namespace, "start")
        libvirtd = str(status["pids"]["libvirtd"])
        local = f"qemu:///system?socket={status['root']}/sock/libvirt-sock"
        for pool in (MACHINES_POOL, IMAGES_POOL):  # as on a host vmctl has never prepared
            subprocess.run(["virsh", "-q", "-c", local, "pool-destroy", pool], capture_output=True)
            subprocess.run(["virsh", "-q", "-c", local, "pool-undefine", pool], check=True, capture_output=True)
        # as on a host of its own: its libvirtd answers at the standard socket path
        subprocess.run(["nsenter", "-t", libvirtd, "-m", "ln", "-sfn", f"{status['root']}/sock/libvirt-sock",
                        "/run/libvirt/libvirt-sock"], check=True)
        keys = state / "sshd"
        keys.mkdir(mode=0o700)
        config = _sshd_config(keys)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        sshd = subprocess.Popen(["nsenter", "-t", libvirtd, "-m", "-n", SSHD, "-D", "-e", "-f", str(config)],
                                stderr=(keys / "sshd.log").open("wb"))
        forward = Forward("127.0.0.1", 0, "tcp", lambda: netns.connect("127.0.0.1", 22, 10, namespace))
        forward.start()
        assert forward.sock is not None
        port = forward.sock.getsockname()[1]
        kind, blob = (keys / "host.pub").read_text().split()[:2]
        (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        # libvirt's ssh reads the passwd home's known_hosts, not this one, unless told
        (keys / "ssh").write_text(f"#!/bin/sh\nexec ssh -o UserKnownHostsFile={keys}/known_hosts "
                                  '-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes "$@"\n')
        (keys / "ssh").chmod(0o755)
        uri = (f"qemu+ssh://root@127.0.0.1:{port}/system?keyfile={keys}/client"
               f"&known_hosts={keys}/known_hosts&command={keys}/ssh&no_tty=1")
        yield {"uri": uri, "state": state, "namespace": namespace, "sshd_log": keys / "sshd.log"}
    finally:
        if uri:
            vmctl("--connect", uri, "down", REMOTE_VM, check=False)
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=30)
        if forward is not None:
            forward.stop()
        stopped = subprocess.run([*VMCTL, "hypervisor", "stop"], capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "VMCTL_STATE_DIR": str(state), "VMCTL_NETNS": namespace})
        shutil.rmtree(state, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr


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
