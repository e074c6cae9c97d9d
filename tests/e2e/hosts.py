"""A second hypervisor host on this machine, reached only through its libvirt URI and its sshd.

The host is a second vmctl runtime, in its own network namespace; its libvirt paths
(so the storage pools vmctl makes there, under /var/lib/libvirt/images/vmctl) exist
only inside its daemons' mount namespace. An OpenSSH sshd runs in that network and
mount namespace, as a host's own sshd would, and this machine reaches it on 127.0.0.1
(a forward into the namespace: nothing is linked to the outside). libvirt is reached
with ``qemu+ssh://`` (OpenSSH's ssh, told by a wrapper to use this host's known_hosts;
libvirt's libssh transport hangs on large replies); guests through that sshd. The
pools and the network the runtime's own start made are removed, so ``up`` defines them
there as on any remote host (the pools in directories this process cannot see).

:func:`link` joins two runtimes' namespaces with a veth pair: their LAN.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from vmctl._core import netns
from vmctl._core.relay import Forward
from vmctl.machines.storage import IMAGES_POOL, MACHINES_POOL
from vmctl.model.spec import DEFAULT_NETWORK

from .conftest import VMCTL

SSHD = "/usr/sbin/sshd"


class SecondHost:
    """Start (fresh, or again after :meth:`stop`), stop, and finally :meth:`close`."""

    def __init__(self, tag: str) -> None:
        self.state = Path(tempfile.mkdtemp(prefix=f"vmctl-e2e-{tag}-", dir="/var/tmp"))
        self.namespace = f"vmctl-{tag}-{os.getpid()}"
        self.keys = self.state / "sshd"
        self.sshd: subprocess.Popen[bytes] | None = None
        self.forward: Forward | None = None
        self.uri = ""

    def _vmctl(self, *args: str) -> dict[str, Any]:
        env = {**os.environ, "VMCTL_STATE_DIR": str(self.state), "VMCTL_NETNS": self.namespace}
        done = subprocess.run([*VMCTL, "hypervisor", *args, "--json"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def start(self) -> str:
        """Start the runtime and its sshd; the first time, as a host vmctl never prepared."""
        first = not self.uri
        status = self._vmctl("start")
        libvirtd = str(status["pids"]["libvirtd"])
        if first:
            local = f"qemu:///system?socket={status['root']}/sock/libvirt-sock"
            for kind, name in (("pool", MACHINES_POOL), ("pool", IMAGES_POOL), ("net", DEFAULT_NETWORK.name)):
                # as on a host vmctl has never prepared: up defines what it needs
                subprocess.run(["virsh", "-q", "-c", local, f"{kind}-destroy", name], capture_output=True)
                subprocess.run(["virsh", "-q", "-c", local, f"{kind}-undefine", name], check=True, capture_output=True)
            self.keys.mkdir(mode=0o700)
            config = self._sshd_config()
        # as on a host of its own: its libvirtd answers at the standard socket path
        subprocess.run(["nsenter", "-t", libvirtd, "-m", "ln", "-sfn", f"{status['root']}/sock/libvirt-sock",
                        "/run/libvirt/libvirt-sock"], check=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.sshd = subprocess.Popen(["nsenter", "-t", libvirtd, "-m", "-n", SSHD, "-D", "-e", "-f",
                                      str(self.keys / "sshd_config")], stderr=(self.keys / "sshd.log").open("ab"))
        if first:
            self.forward = Forward("127.0.0.1", 0, "tcp", lambda: netns.connect("127.0.0.1", 22, 10, self.namespace))
            self.forward.start()
            assert self.forward.sock is not None and config.exists()
            port = self.forward.sock.getsockname()[1]
            kind, blob = (self.keys / "host.pub").read_text().split()[:2]
            (self.keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
            # libvirt's ssh reads the passwd home's known_hosts, not this one, unless told
            (self.keys / "ssh").write_text(f"#!/bin/sh\nexec ssh -o UserKnownHostsFile={self.keys}/known_hosts "
                                           '-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes "$@"\n')
            (self.keys / "ssh").chmod(0o755)
            self.uri = (f"qemu+ssh://root@127.0.0.1:{port}/system?keyfile={self.keys}/client"
                        f"&known_hosts={self.keys}/known_hosts&command={self.keys}/ssh&no_tty=1")
        return self.uri

    def _sshd_config(self) -> Path:
        d = self.keys
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

    def stop(self) -> None:
        """The host goes down: its sshd, then its runtime (guests, daemons, namespace and links)."""
        if self.sshd is not None:
            self.sshd.terminate()
            self.sshd.wait(timeout=30)
            self.sshd = None
        self._vmctl("stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.forward is not None:
                self.forward.stop()
            shutil.rmtree(self.state, ignore_errors=True)


def link(a: str, b: str, a_address: str, b_address: str) -> None:
    """A veth pair between network namespaces ``a`` and ``b`` (their LAN), addressed and up.
    A pair left from before goes first: one end stays while the namespace of the other lingers
    (a socket opened in it keeps it alive a while after it is deleted)."""
    subprocess.run(["ip", "-n", a, "link", "del", "lan0"], capture_output=True)
    subprocess.run(["ip", "link", "add", "lan0", "netns", a, "type", "veth", "peer", "name", "lan0", "netns", b],
                   check=True)
    for namespace, address in ((a, a_address), (b, b_address)):
        subprocess.run(["ip", "-n", namespace, "addr", "add", address, "dev", "lan0"], check=True)
        subprocess.run(["ip", "-n", namespace, "link", "set", "lan0", "up"], check=True)
