"""vmctl's private hypervisor runtime: its own libvirtd and virtlogd.

They run inside a network namespace that vmctl creates and that has no link
to the outside, so no guest on the runtime's networks can reach the internet.
libvirt's fixed paths (/etc/libvirt, /run/libvirt, /var/lib/libvirt, ...) are
bind-mounted from the runtime's own directory inside the daemons' private
mount namespace; only the unix socket lives where the root namespace sees it.
Stopping ends exactly the processes the runtime started, found by PID file.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._core.locks import file_lock
from .._core.paths import RuntimePaths, runtime_paths
from .._core.poll import Look, wait_for
from .._core.proc import cmdline, run, terminate
from .._core.render import render
from ..errors import RuntimeStateError, WaitTimeout

DAEMONS = ("virtlogd", "libvirtd")
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
    """Whether the runtime runs, and what it is made of."""

    running: bool
    uri: str
    netns: str
    netns_exists: bool
    root: str
    pids: dict[str, int | None] = field(default_factory=dict)
    children: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def uri_for(paths: RuntimePaths) -> str:
    return f"qemu:///system?socket={paths.socket}"


def pid_alive(pid_file: Path, program: str) -> int | None:
    """The PID in ``pid_file`` if that process runs and is ``program``."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if program in " ".join(cmdline(pid)) else None


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
        pids = {d: pid_alive(self.paths.pid_file(d), d) for d in DAEMONS}
        running = all(pids.values()) and self.paths.socket.exists()
        return RuntimeStatus(
            running=running,
            uri=self.uri,
            netns=self.netns,
            netns_exists=_netns_exists(self.netns),
            root=str(self.paths.root),
            pids=pids,
            children={kind: sorted(p for p, _ in self._children(kind)) for kind in ("qemu", "network")},
        )

    def is_running(self) -> bool:
        return self.status().running

    def start(self, timeout: float = 30) -> RuntimeStatus:
        """Start the runtime; a running one is returned as it is."""
        with file_lock(self.paths.lock_file):
            status = self.status()
            if status.running:
                return status
            self._stop_processes()
            self._write_config()
            self._create_netns()
            self._start_daemons()
            return self._wait_ready(timeout)

    def stop(self) -> RuntimeStatus:
        """Stop what start started (guests, DHCP servers, daemons) and drop the namespace."""
        with file_lock(self.paths.lock_file):
            self._stop_processes()
            if _netns_exists(self.netns):
                run(["ip", "netns", "delete", self.netns], what="removing the network namespace")
            self.paths.state_file.unlink(missing_ok=True)
            return self.status()

    def _write_config(self) -> None:
        p = self.paths
        for src, _ in p.bind_mounts():
            src.mkdir(parents=True, exist_ok=True)
        p.sock_dir.mkdir(parents=True, exist_ok=True)
        ctx = {"sock_dir": str(p.sock_dir), "log_dir": str(p.log)}
        for name in ("libvirtd.conf", "qemu.conf", "virtlogd.conf"):
            (p.etc / name).write_text(render(f"runtime/{name}.j2", **ctx))

    def _create_netns(self) -> None:
        if not _netns_exists(self.netns):
            run(["ip", "netns", "add", self.netns], what=f"creating network namespace {self.netns}")
        run(["ip", "-n", self.netns, "link", "set", "lo", "up"], what="bringing up loopback")

    def _start_script(self) -> str:
        lines = ["set -e"]
        for src, dst in self.paths.bind_mounts():
            lines.append(f"mkdir -p {shlex.quote(str(dst))}")
            lines.append(f"mount --bind {shlex.quote(str(src))} {shlex.quote(str(dst))}")
        for daemon in DAEMONS:
            pid_file = shlex.quote(str(self.paths.pid_file(daemon)))
            lines.append(f"{daemon} --daemon --pid-file {pid_file}")
        return "\n".join(lines)

    def _start_daemons(self) -> None:
        run(
            ["ip", "netns", "exec", self.netns, "sh", "-c", self._start_script()],
            what="starting libvirtd and virtlogd",
            timeout=60,
            hint=f"see {self.paths.log}/libvirtd.log; is libvirt-daemon-system installed?",
        )

    def _wait_ready(self, timeout: float) -> RuntimeStatus:
        def running(look: Look) -> RuntimeStatus | None:
            status = self.status()
            look.seen = f"pids {status.pids}"
            return status if status.running else None

        try:
            status = wait_for("libvirtd", running, timeout)
        except WaitTimeout as e:
            raise RuntimeStateError(
                f"libvirtd did not come up in {timeout:.0f}s ({e.seen})", hint=f"see {self.paths.log}/libvirtd.log",
            ) from e
        self.paths.state_file.write_text(json.dumps(status.to_dict(), indent=2))
        return status

    def _children(self, kind: str) -> list[tuple[int, Path]]:
        """Processes libvirtd started for us (QEMU guests, network dnsmasq), by PID file."""
        program = {"qemu": "qemu-system", "network": "dnsmasq"}[kind]
        found = []
        for pid_file in sorted((self.paths.run / kind).glob("*.pid")):
            pid = pid_alive(pid_file, program)
            if pid:
                found.append((pid, pid_file))
        return found

    def _stop_processes(self) -> None:
        terminate(pid_alive(self.paths.pid_file("libvirtd"), "libvirtd"))
        for kind in ("qemu", "network"):
            for pid, _ in self._children(kind):
                terminate(pid)
        terminate(pid_alive(self.paths.pid_file("virtlogd"), "virtlogd"))
        for daemon in DAEMONS:
            self.paths.pid_file(daemon).unlink(missing_ok=True)
