"""A VM that vmctl manages: its state, address, SSH, and power."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.poll import Look, wait_for
from .._core.proc import CommandResult
from ..errors import (
    ConfigError,
    GuestError,
    HostKeyMismatch,
    MachineNotRunning,
    MachineStateError,
    NoAddress,
    VmctlError,
    WaitTimeout,
)
from ..guest.keys import fingerprint
from ..guest.ssh import Endpoint, SSHConnection, read_banner
from ..hypervisor.console import read, tail
from ..hypervisor.disks import snapshot_sizes
from ..hypervisor.driver import SUSPENDED
from ..hypervisor.xml import snapshot_xml
from ..model.record import KEY, METADATA_NS, PHASES, Record
from ..model.spec import MachineSpec, NetworkChoice, check_name
from . import forwarder

if TYPE_CHECKING:
    from .host import Host


# growpart says NOCHANGE (exit 1) when the partition already fills the disk
GROW_ROOT = """set -e
dev=$(findmnt -no SOURCE /)
disk=/dev/$(lsblk -no PKNAME "$dev")
part=$(cat /sys/class/block/${dev#/dev/}/partition)
out=$(growpart "$disk" "$part" 2>&1) || case $out in NOCHANGE*) ;; *) echo "$out" >&2; exit 1 ;; esac
resize2fs "$dev" 2>&1 | tail -n 1
"""



UP_STATES = ("running", "blocked", "shutting-down")  # QEMU still there: a stop has something to do


# A VM's files in the machines directory, NAME.SUFFIX; the lock last, so that whoever
# deletes them holds it until the rest are gone (see file_lock on unlinked locks).
FILE_SUFFIXES = ("qcow2", "seed.iso", "serial.log", "known_hosts", *forwarder.SUFFIXES, "lock")


class Machine:
    """One vmctl VM on a :class:`~vmctl.host.Host`. SSH connections open lazily."""

    def __init__(self, host: Host, name: str, record: Record) -> None:
        self.host = host
        self.name = name
        self.record = record
        self._ssh: SSHConnection | None = None

    def __repr__(self) -> str:
        return f"Machine({self.name!r}, uri={self.host.uri!r})"

    # facts --------------------------------------------------------------------

    @property
    def spec(self) -> MachineSpec:
        return self.record.spec

    @property
    def user(self) -> str:
        return self.record.user

    @property
    def state(self) -> str:
        return self.host.hv.state(self.name)

    @property
    def autostart(self) -> bool:
        """Whether ``hypervisor start`` (or libvirtd's own start, elsewhere) starts this VM."""
        return self.host.hv.autostart(self.name)

    def set_autostart(self, on: bool) -> None:
        self.host.hv.set_autostart(self.name, on)

    @property
    def ip(self) -> str | None:
        """The guest's IPv4 address: its DHCP lease, else the guest agent or ARP."""
        if self.state != "running":
            return None
        net = NetworkChoice.parse(self.spec.network)
        if net.kind == "network" and (addr := self.host.hv.lease_address(net.source, self.record.mac)):
            return addr
        return self.host.hv.guest_address(self.name, self.record.mac)

    def endpoint(self) -> Endpoint:
        ip = self.ip
        if ip is None:
            raise NoAddress(self.name, self.state)
        return Endpoint(self.name, ip, self.user, self.host.client_key, self.record.host_key,
                        netns=self.record.netns, jump=self.host.jump)

    def save(self, record: Record) -> None:
        """Keep ``record`` as the VM's metadata in libvirt (live and persistent), and use it."""
        self.host.hv.set_metadata(self.name, METADATA_NS, KEY, record.element())
        self.record = record

    def console(self, lines: int | None = None) -> str:
        """The serial console log (the last ``lines`` lines, if given)."""
        text = read(Path(self.record.serial_log))
        return "\n".join(tail(text, lines)) if lines else text

    @property
    def missing_phases(self) -> tuple[str, ...]:
        """The phases of ``up`` this VM has not finished (an ``up`` was interrupted);
        empty when it is complete. ``vmctl up`` of the same spec resumes them."""
        done = self.record.phases
        if done is None:  # made before phases were recorded: taken as complete (see Record.phases)
            return ()
        return tuple(p for p in PHASES if p not in done and (p != "docker" or self.spec.docker))

    def to_dict(self) -> dict[str, Any]:
        state = self.state
        return {
            "name": self.name, "state": state, "complete": not self.missing_phases,
            "missing_phases": list(self.missing_phases), "ip": self.ip if state == "running" else None,
            "user": self.user, "image": self.spec.image, "uri": self.host.uri,
            "host_key": self.record.host_key, "host_key_fingerprint": fingerprint(self.record.host_key),
            "mac": self.record.mac, "accel": self.record.accel, "netns": self.record.netns,
            "disk": self.record.disk, "seed": self.record.seed, "serial_log": self.record.serial_log,
            "spec": self.spec.to_dict(), "timings": self.record.timings, "created": self.record.created,
            "forwarder": self.forwarder() if self.needs_forwarder else None, "autostart": self.autostart,
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
        """A ``docker.DockerClient`` for this VM: through its forwarded Docker socket when
        that is up, else over a new SSH connection; the guest's pinned host key either way."""
        from ..engine import client  # the Docker SDK takes 0.23 s to import: only here

        if self.forwarder().get("docker", {}).get("state") == "ok":
            with suppress(VmctlError):  # a report can be stale: the socket must answer now
                return client.local(str(forwarder.socket_path(self.host.dir, self.name)), timeout)
        return client.client(SSHConnection(self.endpoint()), timeout)

    # the forwarder: Docker socket and published ports ------------------------------

    @property
    def needs_forwarder(self) -> bool:
        return self.spec.docker or bool(self.spec.ports)

    def forwarder(self) -> dict[str, Any]:
        """The forwarder's last report: state, Docker socket and its health, ports."""
        return forwarder.status(self.host.dir, self.name)

    def forward(self) -> dict[str, Any]:
        """Start (or refresh) the VM's forwarder and wait for its report (see
        :mod:`vmctl.machines.forwarder`); a port or socket that failed is in the report."""
        try:
            return forwarder.ensure(self.host.dir, self.name, self.host.uri, self.spec.ports, self.spec.docker)
        except WaitTimeout:
            return self.forwarder()  # still starting: its status says how far it got

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def wait_ssh(self, timeout: float, on_banner: Callable[[], None] | None = None) -> float:
        """Wait until sshd answers and vmctl can log in; returns the seconds waited.

        The port is polled every 0.2 s, so readiness is seen promptly;
        ``on_banner`` is called when sshd starts answering.
        """

        def logged_in(look: Look) -> bool:
            self.check_alive()
            try:
                endpoint = self.endpoint()
            except VmctlError as e:  # no address yet, or the lease table not readable yet
                look.seen = e.message
                return False
            if not (banner := read_banner(endpoint, timeout=2)):
                look.seen = f"no SSH banner from {endpoint.address}:22"
                return False
            if on_banner and not look.seen.startswith("SSH-"):
                on_banner()
            look.seen = banner
            return self._try_login()

        started = time.monotonic()
        wait_for("SSH login", logged_in, timeout, seen="no address yet")
        return time.monotonic() - started

    def _try_login(self) -> bool:
        self.close()
        try:
            self.ssh().run("true", timeout=30)
            return True
        except HostKeyMismatch:
            raise
        except VmctlError:
            self.close()
            return False

    def check_alive(self) -> None:
        """Raise :class:`MachineNotRunning` (with the console's last lines) unless the VM runs."""
        state = self.state
        if state != "running":
            raise MachineNotRunning(self.name, state, hint=f"console: {' | '.join(self.console_tail(3))}")

    def console_tail(self, lines: int) -> list[str]:
        """The serial console's last non-empty lines."""
        return tail(read(Path(self.record.serial_log)), lines)

    # power ------------------------------------------------------------------

    def stop(self, timeout: float = 120, force: bool = False) -> None:
        """Power off: ACPI shutdown, then a hard stop after ``timeout`` seconds (or at once with force)."""
        self.close()
        forwarder.stop(self.host.dir, self.name)
        state = self.state
        if state not in UP_STATES:
            return
        if not force:
            if state != "shutting-down":
                self.host.hv.shutdown(self.name)
            # "shutting-down" is the guest off and QEMU not yet gone: wait it out too
            with suppress(WaitTimeout):  # the hard stop below follows either way
                wait_for("the guest to power off", lambda _: self.state not in UP_STATES, timeout, interval=0.5)
        self.host.hv.power_off(self.name)

    def start(self, ssh_timeout: float = 600, forward: bool = True) -> float:
        """Power on (if off) or resume (if suspended), wait for SSH, start the forwarder
        (with ``forward``, if the VM needs one); returns the seconds it took."""
        started = time.monotonic()
        state = self.state
        if state != "running":
            self.host.hv.start(self.name)  # libvirt restores a managed save itself
        self.wait_ssh(ssh_timeout)
        if state == SUSPENDED:
            self.sync_clock()
        if self.record.grow_root:  # its disk was grown while it was off (vmctl set --disk)
            self.grow_root()
        if forward and self.needs_forwarder:
            self.forward()
        return time.monotonic() - started

    def suspend(self) -> None:
        """Save the running VM's memory to disk and stop its QEMU (libvirt's managed save),
        which frees the host's memory; :meth:`resume` or :meth:`start` brings it back."""
        state = self.state
        if state == SUSPENDED:
            return
        if state != "running":
            hint = f"only a running VM can be suspended: 'vmctl start {self.name}' first"
            raise MachineNotRunning(self.name, state, hint=hint)
        self.close()
        forwarder.stop(self.host.dir, self.name)  # its connections would hang on a guest that is gone
        self.host.hv.managed_save(self.name)

    def resume(self, ssh_timeout: float = 600) -> float:
        """Bring a suspended VM back as it was (SSH answers again, the clock corrected)."""
        if (state := self.state) != SUSPENDED:
            hint = f"start it with 'vmctl start {self.name}'" if state != "running" else "it is running already"
            raise MachineStateError(f"{self.name} is {state}, not suspended", name=self.name, state=state, hint=hint)
        return self.start(ssh_timeout)

    def running_or_stopped(self, done: str) -> str:
        """The VM's state, ``running`` or ``shutoff``; any other (suspended, paused...) is a
        :class:`MachineStateError` saying it cannot be ``done`` so."""
        if (state := self.state) not in ("running", "shutoff"):
            raise MachineStateError(f"{self.name} is {state}: only a running or stopped VM can be {done}",
                                    name=self.name, state=state,
                                    hint=f"'vmctl resume {self.name}' or 'vmctl stop {self.name}' first")
        return state

    # snapshots ------------------------------------------------------------------

    def snapshot(self, snapshot: str, description: str = "") -> dict[str, Any]:
        """Take snapshot ``snapshot``: the disk, and a running VM's memory too (a revert
        continues it from there). Kept inside the VM's own overlay; returns its entry."""
        check_name(snapshot, "snapshot name")
        state = self.running_or_stopped("snapshotted")
        memory = state == "running"
        if memory and self.spec.mounts:
            raise MachineStateError(
                f"{self.name} has shared folders, whose state QEMU cannot save: no snapshot of its memory",
                name=self.name, state=state, hint=f"'vmctl stop {self.name}' first, for a snapshot of its disk")
        if any(s["name"] == snapshot for s in self.host.hv.snapshots(self.name)):
            raise ConfigError(f"{self.name} already has a snapshot named {snapshot!r}",
                              hint=f"another name, or 'vmctl snapshot rm {self.name} {snapshot}' first")
        targets = self.host.hv.disk_targets(self.name)
        disks = [(target, "no" if readonly else "internal") for target, readonly in targets]
        self.host.hv.snapshot_create(self.name, snapshot_xml(snapshot, memory=memory, disks=disks,
                                                             description=description))
        return next(s for s in self.snapshots() if s["name"] == snapshot)

    def snapshots(self) -> list[dict[str, Any]]:
        """The VM's snapshots, oldest first: name, created, state, memory, current,
        description, and ``memory_bytes`` (the saved memory and device state)."""
        found = self.host.hv.snapshots(self.name)
        disk = Path(self.record.disk)
        sizes = snapshot_sizes(disk) if found and disk.exists() else {}
        return [{**s, "memory_bytes": sizes.get(s["name"])} for s in found]

    def revert(self, snapshot: str, ssh_timeout: float = 600) -> None:
        """Return the VM to ``snapshot``: its disk, its metadata (spec, pinned key) as they
        were then, and, for a snapshot with memory, the running guest, with SSH working
        again and the clock set to the host's."""
        self.close()
        forwarder.stop(self.host.dir, self.name)  # its connections are to a guest that is gone
        self.host.hv.snapshot_revert(self.name, snapshot)
        if (record := self.host.record(self.name)) is not None:
            self.record = record  # the domain XML, metadata included, is the snapshot's
        if self.state == "running":
            self.wait_ssh(ssh_timeout)
            self.sync_clock()
            if self.needs_forwarder:
                self.forward()

    def delete_snapshot(self, snapshot: str) -> None:
        self.host.hv.snapshot_delete(self.name, snapshot)

    def grow_root(self) -> str:
        """Grow the running guest's root partition to fill its disk, then its file system
        (online); returns resize2fs's last line. Clears the record's ``grow_root``."""
        result = self.run(["sudo", "sh", "-c", GROW_ROOT], timeout=300)
        if not result.ok:
            raise GuestError(f"growing the root file system of {self.name} failed: {result.tail()}",
                             machine=self.name, hint=f"'vmctl ssh {self.name} -- sudo growpart /dev/vda 1'")
        if self.record.grow_root:
            self.save(replace(self.record, grow_root=False))
        return result.stdout.strip()

    def sync_clock(self) -> None:
        """Set the guest's clock to the host's: a resumed guest's stood still while it was saved."""
        result = self.run(f"sudo date -u -s @{time.time():.3f}", timeout=60)
        if not result.ok:
            raise GuestError(f"setting the clock of resumed {self.name} failed: {result.tail()}", machine=self.name,
                             hint=f"'vmctl ssh {self.name} -- sudo date -u -s @$(date +%s)'")

    def restart(self, ssh_timeout: float = 600) -> float:
        self.stop()
        return self.start(ssh_timeout)

    def down(self) -> list[str]:
        """Destroy and undefine the VM, and delete its disk, seed and log."""
        self.close()
        return self.host.delete(self.name)

