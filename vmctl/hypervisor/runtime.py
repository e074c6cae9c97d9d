"""vmctl's private hypervisor runtime: its own libvirtd and virtlogd.

They run inside a network namespace that vmctl creates and that has no link
to the outside, so no guest on the runtime's networks can reach the internet.
libvirt's fixed paths (/etc/libvirt, /run/libvirt, /var/lib/libvirt, ...) are
bind-mounted from the runtime's own directory inside the daemons' private
mount namespace; only the unix socket lives where the root namespace sees it.

Starting starts only what is missing (:func:`plan_start`): a daemon that died is
started alone, in the same namespace and with the same bind mounts, and the
guests keep running (libvirtd re-attaches to their QEMU processes from the
status files in its ``/run/libvirt/qemu``, the runtime's ``run/``).

Stopping ends exactly the processes the runtime started, found by PID file and
confirmed before each signal (:mod:`vmctl._core.proc`). The daemons write their
own PID files (``--pid-file``), and libvirt has QEMU's and dnsmasq's written;
a process counts as the one a PID file names when its executable has the
expected name, the file was written during this boot, and the process had
started by then. A daemon's full identity (executable, start time, boot id) is
recorded in ``runtime.json`` once the runtime is up, and from then on the PID
must be that very process.
"""

from __future__ import annotations

import grp
import json
import os
import shlex
import shutil
import stat
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .._core.locks import file_lock
from .._core.paths import QEMU_GROUP, RuntimePaths, runtime_paths
from .._core.poll import Look, wait_for
from .._core.proc import ProcessIdentity, describe, pid_file_owner, read_pid, run, terminate
from .._core.render import render
from ..errors import RuntimeStateError, WaitTimeout

DAEMONS = ("virtlogd", "libvirtd")
KVM_DEVICE = "/dev/kvm"  # in the order they start: libvirtd hands QEMU's output to virtlogd
CHILDREN = {"qemu": ("qemu-system", "qemu-kvm"), "network": ("dnsmasq",)}  # executables' names, by kind
CONFIG_FILES = ("libvirtd.conf", "qemu.conf", "virtlogd.conf")
DEFAULT_NETNS = "vmctl"


SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``$VMCTL_CONNECT``, else the private runtime, else the system libvirtd."""
    if uri:
        return uri
    if env := os.environ.get("VMCTL_CONNECT"):
        return env
    runtime = Runtime()
    if runtime.is_running():
        return runtime.uri
    if SYSTEM_SOCKET.exists():
        return "qemu:///system"
    raise RuntimeStateError("no libvirt daemon is running and vmctl's runtime is stopped")


def default_netns() -> str:
    """The runtime's network namespace: ``$VMCTL_NETNS`` or ``vmctl``."""
    return os.environ.get("VMCTL_NETNS") or DEFAULT_NETNS


@dataclass(frozen=True)
class RuntimeStatus:
    """Whether the runtime runs, and what it is made of.

    ``started`` and ``kept`` say what :meth:`Runtime.start` did: the daemons it
    started, and what it found running and left alone (daemons, ``qemu`` guests and
    ``network`` DHCP servers, by PID). Both are empty in any other status."""

    running: bool
    uri: str
    netns: str
    netns_exists: bool
    root: str
    pids: dict[str, int | None] = field(default_factory=dict)
    children: dict[str, list[int]] = field(default_factory=dict)
    socket_exists: bool = False
    started: list[str] = field(default_factory=list)
    kept: dict[str, list[int]] = field(default_factory=dict)
    autostarted: list[str] = field(default_factory=list)  # VMs marked autostart that start started

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class StartPlan:
    """What :meth:`Runtime.start` does to the runtime it found (see :func:`plan_start`)."""

    fresh: bool = False  # nothing of the runtime is left: configuration, namespace and both daemons
    stop: tuple[str, ...] = ()  # daemons that run without serving (libvirtd without its socket): restarted
    start: tuple[str, ...] = ()  # daemons to start, in order
    kept: dict[str, list[int]] = field(default_factory=dict)  # what runs and is left alone, by PID


def plan_start(status: RuntimeStatus) -> StartPlan:
    """What to start so that the runtime runs, touching nothing that still works:

    ======================================  ==========================================
    found                                   plan
    ======================================  ==========================================
    both daemons, and the socket            nothing: it runs
    no daemon, no guest, no DHCP server     fresh: configuration, namespace, both daemons
    anything alive, but no namespace        refused (RuntimeStateError): stop, then start
    virtlogd dead                           start virtlogd (libvirtd, guests kept)
    libvirtd dead                           start libvirtd (it re-attaches to the guests)
    both daemons dead, guests or dnsmasq    start both (guests, dnsmasq kept)
    libvirtd alive without its socket       restart libvirtd alone (guests kept)
    ======================================  ==========================================
    """
    alive = {d: [pid] for d, pid in status.pids.items() if pid}
    children = {kind: list(pids) for kind, pids in status.children.items() if pids}
    found = {**alive, **children}
    if status.running:
        return StartPlan(kept=found)
    if not found:
        return StartPlan(fresh=True, start=DAEMONS)
    if not status.netns_exists:
        raise RuntimeStateError(
            f"the runtime's network namespace {status.netns} is gone, yet parts of it still run "
            f"({', '.join(f'{kind} {pids}' for kind, pids in found.items())})",
            hint="'vmctl hypervisor stop' ends them; then 'vmctl hypervisor start'",
        )
    stop = ("libvirtd",) if "libvirtd" in alive and not status.socket_exists else ()
    start = tuple(d for d in DAEMONS if d not in alive or d in stop)
    return StartPlan(stop=stop, start=start, kept={k: v for k, v in found.items() if k not in stop})


def uri_for(paths: RuntimePaths) -> str:
    return f"qemu:///system?socket={paths.socket}"


def pid_alive(pid_file: Path, program: str) -> int | None:
    """The PID in ``pid_file`` (a daemon's own) if that process runs, is ``program``
    (its executable's name starts so) and can have written the file."""
    process = pid_file_owner(pid_file, (program,))
    return process.pid if process else None


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


class Runtime:
    """The private runtime rooted at ``paths`` in network namespace ``netns``."""

    def __init__(self, paths: RuntimePaths | None = None, netns: str | None = None) -> None:
        self.paths = paths or runtime_paths()
        self.netns = netns or default_netns()

    @property
    def uri(self) -> str:
        return uri_for(self.paths)

    def status(self) -> RuntimeStatus:
        daemons = {d: self._daemon(d) for d in DAEMONS}
        socket_exists = self.paths.socket.exists()
        return RuntimeStatus(
            running=all(daemons.values()) and socket_exists,
            uri=self.uri,
            netns=self.netns,
            netns_exists=_netns_exists(self.netns),
            root=str(self.paths.root),
            pids={d: p.pid if p else None for d, p in daemons.items()},
            children={kind: sorted(p.pid for p in self._children(kind)) for kind in CHILDREN},
            socket_exists=socket_exists,
        )

    def is_running(self) -> bool:
        return self.status().running

    def start(self, timeout: float = 30) -> RuntimeStatus:
        """Start what of the runtime is not running (:func:`plan_start`), and nothing else;
        the status says what was ``started`` and what ``kept``."""
        with file_lock(self.paths.lock_file):
            found = self.status()
            plan = plan_start(found)
            if not plan.start:
                return replace(found, kept=plan.kept)
            if plan.fresh or not all((self.paths.etc / name).exists() for name in CONFIG_FILES):
                # kept guests and daemons run with the configuration they started with: a
                # daemon restarted next to them gets that too, not a newer vmctl's
                self._write_config()
            if plan.fresh:
                # nothing of the runtime runs: what /run/libvirt holds (guests' status, PIDs)
                # is from before (a reboot, a kill): libvirtd must not act on it
                shutil.rmtree(self.paths.run, ignore_errors=True)
                self.paths.run.mkdir(parents=True, exist_ok=True)
                self._create_netns()
            for daemon in plan.stop:
                self._stop_daemon(daemon)
            self._start_daemons(plan.start)
            return replace(self._wait_ready(timeout), started=list(plan.start), kept=plan.kept)

    def stop(self) -> RuntimeStatus:
        """Stop what start started (guests, DHCP servers, daemons) and drop the namespace.
        A process that outlives SIGKILL (stuck in the kernel) is a :class:`RuntimeStateError`,
        and the namespace stays for the next stop."""
        with file_lock(self.paths.lock_file):
            if stuck := self._stop_processes():
                raise RuntimeStateError(
                    f"still running after SIGKILL: {', '.join(describe(p) for p in stuck)}",
                    hint="state D is a process stuck in the kernel (a hung disk or device; "
                    "/proc/PID/stack shows where); run 'vmctl hypervisor stop' again once it is gone",
                )
            if _netns_exists(self.netns):
                run(["ip", "netns", "delete", self.netns], what="removing the network namespace")
            self.paths.state_file.unlink(missing_ok=True)
            return self.status()

    def _write_config(self) -> None:
        p = self.paths
        for src, _ in p.bind_mounts():
            src.mkdir(parents=True, exist_ok=True)
        p.sock_dir.mkdir(parents=True, exist_ok=True)
        ctx = {"sock_dir": str(p.sock_dir), "log_dir": str(p.log), "qemu_user": QEMU_GROUP}
        for name in CONFIG_FILES:
            (p.etc / name).write_text(render(f"runtime/{name}.j2", **ctx))

    def _create_netns(self) -> None:
        if not _netns_exists(self.netns):
            run(["ip", "netns", "add", self.netns], what=f"creating network namespace {self.netns}")
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"], what="bringing up loopback")

    def _start_script(self, daemons: Sequence[str] = DAEMONS) -> str:
        """The bind mounts, then ``daemons``: ``ip netns exec`` runs it in a mount namespace
        of its own, so a daemon started alone later sees the same paths as the first ones."""
        lines = ["set -e"]
        for src, dst in self.paths.bind_mounts():
            lines.append(f"mkdir -p {shlex.quote(str(dst))}")
            lines.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}")
        if kvm := self._kvm_node():
            lines.append(f"mount --bind {shlex.quote(str(kvm))} {KVM_DEVICE}")
        for daemon in daemons:
            pid_file = shlex.quote(str(self.paths.pid_file(daemon)))
            lines.append(f"{daemon} --daemon --pid-file {pid_file}")
        return "\n".join(lines)

    def _kvm_node(self) -> Path | None:
        """A /dev/kvm the guests' QEMU user may open, for the daemons' namespace only.

        Without udev (no systemd here) /dev/kvm stays 0600 root:root, where udev
        would make it 0660 root:kvm. libvirt then disagrees with itself (its probe
        may open /dev/kvm, its cache check as libvirt-qemu may not), re-probes QEMU
        on every lookup and takes a minute to define a domain. A node of our own,
        0660 root:kvm, bound over /dev/kvm inside the namespace, is what udev gives;
        the host's /dev is left as it is. None when no change is needed or possible."""
        try:
            device = os.stat(KVM_DEVICE)
            kvm_gid = grp.getgrnam("kvm").gr_gid
        except (OSError, KeyError):
            return None
        if device.st_gid == kvm_gid and device.st_mode & 0o060 == 0o060:
            return None
        node = self.paths.root / "kvm"
        if not node.is_char_device() or node.stat().st_rdev != device.st_rdev:
            node.unlink(missing_ok=True)
            os.mknod(node, stat.S_IFCHR | 0o660, device.st_rdev)
        os.chown(node, 0, kvm_gid)
        os.chmod(node, 0o660)
        return node

    def _start_daemons(self, daemons: Sequence[str] = DAEMONS) -> None:
        # A stale PID file stays: a daemon still running under it (one we failed to
        # recognise) holds its lock, and the new one refuses to start instead of doubling it.
        run(
            ["ip", "netns", "exec", self.netns, "sh", "-c", self._start_script(daemons)],
            what=f"starting {' and '.join(daemons)}",
            timeout=60,
            hint=f"see {self.paths.log}/libvirtd.log; is libvirt-daemon-system installed?",
        )

    def _stop_daemon(self, daemon: str) -> None:
        process = self._daemon(daemon)
        if not terminate(process) and process is not None:
            raise RuntimeStateError(
                f"{daemon} did not stop for a restart: {describe(process)}",
                hint="state D is a process stuck in the kernel; 'vmctl hypervisor stop' once it is gone",
            )

    def _wait_ready(self, timeout: float) -> RuntimeStatus:
        def running(look: Look) -> RuntimeStatus | None:
            status = self.status()
            look.seen = f"pids {status.pids}, socket {'present' if status.socket_exists else 'absent'}"
            return status if status.running else None

        try:
            status = wait_for("libvirtd", running, timeout)
        except WaitTimeout as e:
            raise RuntimeStateError(
                f"libvirtd did not come up in {timeout:.0f}s ({e.seen})", hint=f"see {self.paths.log}/libvirtd.log",
            ) from e
        self._record(status)
        return status

    # who is who ------------------------------------------------------------------------

    def _recorded(self) -> dict[str, ProcessIdentity]:
        """The daemons' identities recorded when the runtime last came up."""
        try:
            data = json.loads(self.paths.state_file.read_text()).get("identities", {})
        except (OSError, ValueError, AttributeError):
            return {}
        found = {d: ProcessIdentity.from_dict(v) for d, v in data.items() if isinstance(v, dict)}
        return {d: p for d, p in found.items() if p is not None}

    def _record(self, status: RuntimeStatus) -> None:
        """Write the status, and the daemons' identities, to ``runtime.json``."""
        identities = {d: p.to_dict() for d in DAEMONS if (p := self._daemon(d))}
        self.paths.state_file.write_text(json.dumps({**status.to_dict(), "identities": identities}, indent=2))

    def _daemon(self, daemon: str) -> ProcessIdentity | None:
        """The running ``daemon`` of this runtime: the process its PID file names, which
        must be the very one recorded for that PID, else pass :func:`pid_file_owner`."""
        pid_file = self.paths.pid_file(daemon)
        recorded = self._recorded().get(daemon)
        if recorded is not None and recorded.pid == read_pid(pid_file):
            return recorded if recorded.matches() else None
        return pid_file_owner(pid_file, (daemon,))

    def _children(self, kind: str) -> list[ProcessIdentity]:
        """Processes libvirtd started for us (QEMU guests, network dnsmasq), by PID file."""
        found = (pid_file_owner(f, CHILDREN[kind]) for f in sorted((self.paths.run / kind).glob("*.pid")))
        return [p for p in found if p is not None]

    def _stop_processes(self) -> list[ProcessIdentity]:
        """End the daemons and what libvirtd started; returns those still there after SIGKILL."""
        daemons = {d: self._daemon(d) for d in DAEMONS}
        targets = [daemons["libvirtd"], *self._children("qemu"), *self._children("network"), daemons["virtlogd"]]
        stuck = [p for p in targets if p is not None and not terminate(p)]
        for daemon, process in daemons.items():
            if process not in stuck:  # its PID file goes with it (or was stale)
                self.paths.pid_file(daemon).unlink(missing_ok=True)
        return stuck
