"""A VM that vmctl manages: its state, address, SSH, and power."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..errors import ConfigError, VmctlError, WaitTimeout
from ..guest.ssh import Endpoint, SSHConnection, read_banner
from ..guest.keys import fingerprint
from .._core.proc import CommandResult
from ..model.record import Record
from ..hypervisor.console import read, tail
from ..model.spec import NetworkChoice

if TYPE_CHECKING:
    from .host import Host


POLL = 0.2  # seconds between readiness checks: prompt, and cheap for the host
UP_STATES = ("running", "blocked", "shutting-down")  # QEMU still there: a stop has something to do


class Machine:
    """One vmctl VM on a :class:`~vmctl.host.Host`. SSH connections open lazily."""

    def __init__(self, host: "Host", name: str, record: Record) -> None:
        self.host = host
        self.name = name
        self.record = record
        self._ssh: SSHConnection | None = None

    def __repr__(self) -> str:
        return f"Machine({self.name!r}, uri={self.host.uri!r})"

    # facts --------------------------------------------------------------------

    @property
    def spec(self) -> Any:
        return self.record.spec

    @property
    def user(self) -> str:
        return self.record.user

    @property
    def state(self) -> str:
        return self.host.hv.state(self.name)

    @property
    def ip(self) -> str | None:
        """The guest's IPv4 address: its DHCP lease, else the guest agent or ARP."""
        if self.state != "running":
            return None
        net = NetworkChoice.parse(self.spec.network)
        if net.kind == "network":
            if addr := self.host.hv.lease_address(net.source, self.record.mac):
                return addr
        return self.host.hv.guest_address(self.name, self.record.mac)

    def endpoint(self) -> Endpoint:
        ip = self.ip
        if ip is None:
            raise VmctlError(f"{self.name} has no address (state: {self.state})",
                             hint=f"start it with 'vmctl start {self.name}'")
        return Endpoint(self.name, ip, self.user, self.host.client_key, self.record.host_key,
                        netns=self.record.netns)

    def console(self, lines: int | None = None) -> str:
        """The serial console log (the last ``lines`` lines, if given)."""
        text = read(Path(self.record.serial_log))
        return "\n".join(tail(text, lines)) if lines else text

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            "name": self.name, "state": state, "ip": self.ip if state == "running" else None,
            "user": self.user, "image": self.spec.image, "uri": self.host.uri,
            "host_key": self.record.host_key, "host_key_fingerprint": fingerprint(self.record.host_key),
            "mac": self.record.mac, "accel": self.record.accel, "netns": self.record.netns,
            "disk": self.record.disk, "seed": self.record.seed, "serial_log": self.record.serial_log,
            "spec": self.spec.to_dict(), "timings": self.record.timings, "created": self.record.created,
        }

    # SSH --------------------------------------------------------------------

    def ssh(self) -> SSHConnection:
        """The machine's SSH connection (pinned host key), opened on first use."""
        if self._ssh is None:
            self._ssh = SSHConnection(self.endpoint())
        return self._ssh

    def run(self, command: str | Sequence[str], timeout: float = 600, stdin: bytes | None = None) -> CommandResult:
        return self.ssh().run(command, timeout=timeout, stdin=stdin)

    def put(self, local: Path, remote: str) -> None:
        self.ssh().put(local, remote)

    def get(self, remote: str, local: Path) -> None:
        self.ssh().get(remote, local)

    def docker(self, timeout: int = 60) -> Any:
        """A ``docker.DockerClient`` for this VM, over SSH with the pinned host key."""
        from ..engine.client import client

        return client(SSHConnection(self.endpoint()), timeout)

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def wait_ssh(self, timeout: float, on_banner: Callable[[], None] | None = None) -> float:
        """Wait until sshd answers and vmctl can log in; returns the seconds waited.

        The port is polled every 0.2 s, so readiness is seen promptly;
        ``on_banner`` is called once, when sshd first answers.
        """
        started, seen = time.monotonic(), "no address yet"
        while time.monotonic() - started < timeout:
            self._check_alive()
            try:
                endpoint = self.endpoint()
            except VmctlError:
                time.sleep(POLL)
                continue
            if banner := read_banner(endpoint, timeout=2):
                if on_banner and not seen.startswith("SSH-"):
                    on_banner()
                seen = banner
                if self._try_login():
                    return time.monotonic() - started
            else:
                seen = f"no SSH banner from {endpoint.address}:22"
            time.sleep(POLL)
        raise WaitTimeout("SSH login", timeout, seen)

    def _try_login(self) -> bool:
        self.close()
        try:
            self.ssh().run("true", timeout=30)
            return True
        except VmctlError as e:
            if type(e).__name__ == "HostKeyMismatch":
                raise
            self.close()
            return False

    def _check_alive(self) -> None:
        state = self.state
        if state != "running":
            raise VmctlError(f"{self.name} is {state}, not running",
                             hint=f"console: {' | '.join(tail(read(Path(self.record.serial_log)), 3))}")

    # power ------------------------------------------------------------------

    def stop(self, timeout: float = 120, force: bool = False) -> None:
        """Power off: ACPI shutdown, then a hard stop after ``timeout`` seconds (or at once with force)."""
        self.close()
        state = self.state
        if state not in UP_STATES:
            return
        if not force:
            if state != "shutting-down":
                self.host.hv.shutdown(self.name)
            deadline = time.monotonic() + timeout
            # "shutting-down" is the guest off and QEMU not yet gone: wait it out too
            while time.monotonic() < deadline and self.state in UP_STATES:
                time.sleep(0.5)
        self.host.hv.power_off(self.name)

    def start(self, ssh_timeout: float = 600) -> float:
        """Power on (if off) and wait for SSH; returns the seconds it took."""
        if self.state != "running":
            self.host.hv.start(self.name)
        return self.wait_ssh(ssh_timeout)

    def restart(self, ssh_timeout: float = 600) -> float:
        self.stop()
        return self.start(ssh_timeout)

    def down(self) -> list[str]:
        """Destroy and undefine the VM, and delete its disk, seed and log."""
        self.close()
        return self.host.delete(self.name)


def not_managed(name: str, uri: str) -> ConfigError:
    return ConfigError(f"{name!r} on {uri} is not a vmctl VM (no vmctl metadata)",
                       hint="vmctl only manages the VMs it created; use virsh for the others")
