"""Running host commands: every argument a list item, every run bounded."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import CommandError, MissingDependency, VmctlError, WaitTimeout
from .poll import Look, wait_for


@dataclass(frozen=True)
class CommandResult:
    """What a command did: its exit code and output."""

    command: str
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def tail(self, lines: int = 3) -> str:
        """The last lines of stderr (or stdout), joined on one line."""
        text = (self.stderr or self.stdout).strip().splitlines()
        return " | ".join(text[-lines:])


def run(
    argv: Sequence[str],
    *,
    what: str,
    timeout: float = 60,
    check: bool = True,
    hint: str = "",
    input: bytes | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Run ``argv`` (never through a shell) and return its result.

    With ``check`` a non-zero exit raises :class:`CommandError` naming ``what``.
    """
    command = shlex.join(argv)
    try:
        done = subprocess.run(
            list(argv), capture_output=True, timeout=timeout, input=input, check=False, cwd=cwd
        )
    except FileNotFoundError as e:
        raise MissingDependency(f"{what} failed: {argv[0]} is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise VmctlError(f"{what} did not finish in {timeout:.0f}s: {command}") from e
    result = CommandResult(
        command,
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )
    if check and not result.ok:
        raise CommandError(result, what=what, hint=hint)
    return result


# processes by PID --------------------------------------------------------------------
#
# A PID names a process only until it exits: then the number is free for the next one,
# and a PID file outlives its process (a crash, a reboot: vmctl's state directory is
# not a tmpfs). So before vmctl signals a PID it confirms who that is: a
# ProcessIdentity (executable, start time in clock ticks since boot, boot id) taken
# when the process was started is compared with the process under that PID now.
#
# Only /proc/PID/stat and /proc/PID/exe are read for that, never /proc/PID/cmdline:
# reading another process's argv takes its memory-map lock, which a process stuck in
# the kernel (state D) may hold forever, and the reader would hang with it.

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
CLOCK_SLACK = 2.0  # seconds allowed between a file's mtime (wall clock) and a start time (since boot)
KILL_WAIT = 5.0  # seconds to wait for a process to go after SIGKILL; longer: it is stuck in the kernel
GONE_STATES = ("Z", "X")  # zombie, dead: exited, not yet (or just) reaped


def cmdline(pid: int) -> list[str]:
    """A process's argv (empty when there is no such process).

    It may block while the process is stuck in the kernel (see above): read it only
    for a process whose identity is already confirmed, never to find out who it is."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat from the third (state) on; empty when there is no such
    process. The second, the command name in parentheses, may itself hold ``)`` and spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def state(pid: int) -> str:
    """A process's state letter (``R``, ``S``, ``D``, ``Z``...), or ``""`` when there is none."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie, or no process at all)."""
    return state(pid) in ("", *GONE_STATES)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    return not is_zombie(pid)


def boot_id() -> str:
    """This boot's random id (a new one at every boot)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def boot_time() -> float:
    """When this boot began, on the wall clock."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _exe(pid: int) -> str | None:
    """The path of a process's executable; ``""`` when it is not ours to read (another
    user's, and we are not root); None when there is no such process, or it is exiting
    or has exited (its memory, and with it the executable, released)."""
    try:
        path = os.readlink(f"/proc/{pid}/exe")
    except PermissionError:
        return ""
    except OSError:
        return None
    return path.removesuffix(" (deleted)")  # the package was upgraded under a running daemon


def _comm(pid: int) -> str:
    """The process's name as the kernel keeps it (15 characters at most), readable by anyone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a PID is: its executable, when it started and in which boot. A PID is
    reused; the three together are not."""

    pid: int
    exe: str  # the executable's path, as the kernel resolved it ("" if not ours to read)
    start_ticks: int  # field 22 of /proc/PID/stat: clock ticks after boot
    boot_id: str

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The process ``pid`` is now; None when there is none, or it is exiting or has exited."""
        fields, exe = _stat(pid), _exe(pid)
        if len(fields) < 20 or fields[0] in GONE_STATES or exe is None or not fields[19].isdigit():
            return None
        return cls(pid, exe, int(fields[19]), boot_id())

    def matches(self) -> bool:
        """Whether ``pid`` is still this process, and it has not exited: the same start
        time in the same boot, and the same executable while that can be read (a process
        that is exiting has released it, and is still there until it is a zombie)."""
        fields = _stat(self.pid)
        if len(fields) < 20 or fields[0] in GONE_STATES or fields[19] != str(self.start_ticks):
            return False
        return boot_id() == self.boot_id and _exe(self.pid) in (None, "", self.exe)

    @property
    def name(self) -> str:
        """The executable's file name (the kernel's name for the process when that is not readable)."""
        return Path(self.exe).name if self.exe else _comm(self.pid)

    def started(self) -> float:
        """When it started, on the wall clock (to within the steps the clock took since)."""
        return boot_time() + self.start_ticks / os.sysconf("SC_CLK_TCK")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ProcessIdentity | None:
        """The identity ``to_dict`` wrote; None for anything else."""
        pid, exe, ticks, boot = (data.get(k) for k in ("pid", "exe", "start_ticks", "boot_id"))
        if isinstance(pid, int) and isinstance(exe, str) and isinstance(ticks, int) and isinstance(boot, str):
            return cls(pid, exe, ticks, boot)
        return None


# PID files ---------------------------------------------------------------------------
#
# Two kinds. A PID file vmctl writes (a forwarder's) holds the PID on its first line
# and the process's identity, taken when vmctl started it, on the second: the process
# counts only while it still matches. A daemon's own PID file (libvirtd's and
# virtlogd's --pid-file; QEMU's and dnsmasq's, written for libvirt) holds only a PID:
# the process counts when its executable has the expected name, the file was written
# during this boot, and the process had started by the time the file was written
# (a process that got the PID later, after the writer exited, started after that).


def read_pid(path: Path) -> int | None:
    """The PID on the first line of a PID file; None without a file or a PID."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() and int(first) > 0 else None


def pid_file_text(process: ProcessIdentity) -> str:
    """What a PID file vmctl writes holds: the PID, then the process's identity."""
    return f"{process.pid}\n{json.dumps(process.to_dict())}\n"


def recorded_identity(path: Path) -> ProcessIdentity | None:
    """The identity on a PID file's second line (None: an older vmctl's file, or a daemon's)."""
    try:
        lines = path.read_text().splitlines()
        data = json.loads(lines[1]) if len(lines) > 1 else None
    except (OSError, ValueError):
        return None
    return ProcessIdentity.from_dict(data) if isinstance(data, dict) else None


def written_by(path: Path, process: ProcessIdentity) -> bool:
    """Whether ``process`` can be the one that wrote the PID file ``path``: the file was
    written during this boot, and the process had started by then."""
    try:
        written = path.stat().st_mtime
    except OSError:
        return False
    return written >= boot_time() - CLOCK_SLACK and process.started() <= written + CLOCK_SLACK


def pid_file_owner(path: Path, names: tuple[str, ...]) -> ProcessIdentity | None:
    """The running process a daemon's own PID file names, if its executable's name starts
    with one of ``names`` and it can have written the file (:func:`written_by`)."""
    pid = read_pid(path)
    process = ProcessIdentity.of(pid) if pid else None
    if process is None or not process.name.startswith(names) or not written_by(path, process):
        return None
    return process


# ending a process --------------------------------------------------------------------


def _signal(pid: int, sig: signal.Signals, group: bool = False) -> bool:
    """Send ``sig`` to ``pid`` (its process group with ``group``); False if it is gone."""
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _gone_within(process: ProcessIdentity, seconds: float, after: str) -> bool:
    def gone(_: Look) -> bool:
        return not process.matches()

    try:
        return wait_for(f"process {process.pid} to exit after {after}", gone, seconds, interval=0.05)
    except WaitTimeout:
        return False


def terminate(process: ProcessIdentity | int | None, grace: float = 10, group: bool = False,
              kill_wait: float = KILL_WAIT) -> bool:
    """End ``process``: SIGTERM, then SIGKILL after ``grace`` seconds (to its whole process
    group with ``group``: a session leader and what it started).

    Each signal goes only while the PID is still that process: a PID now someone else's
    is left alone. (A bare PID is taken to be whatever runs under it now: confirm who
    that is first, with a recorded :class:`ProcessIdentity` or :func:`pid_file_owner`.)
    True once the process is gone (or was already); False when it is still there
    ``kill_wait`` seconds after SIGKILL, which only a process stuck in the kernel
    survives (state D): the caller reports it (:func:`describe`), and never waits longer."""
    if isinstance(process, int):
        process = ProcessIdentity.of(process)
    if process is None or not process.matches() or not _signal(process.pid, signal.SIGTERM):
        return True
    if _gone_within(process, grace, "SIGTERM"):
        return True
    if not process.matches() or not _signal(process.pid, signal.SIGKILL, group):
        return True
    return _gone_within(process, kill_wait, "SIGKILL")


def describe(process: ProcessIdentity) -> str:
    """``qemu-system-x86_64 (PID 812, state D)``: for a message about a process that stays."""
    return f"{process.name or 'process'} (PID {process.pid}, state {state(process.pid) or 'gone'})"
