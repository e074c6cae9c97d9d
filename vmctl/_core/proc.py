"""Running host commands: every argument a list item, every run bounded."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
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


def cmdline(pid: int) -> list[str]:
    """A process's argv (empty when there is no such process)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return bool(cmdline(pid)) and not is_zombie(pid)


def terminate(pid: int | None, grace: float = 10, group: bool = False) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds (to its whole process group with
    ``group``: a session leader and what it started); waits, bounded, until it is gone."""
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return

    def gone(_: Look) -> bool:
        return not alive(pid)

    try:
        wait_for(f"process {pid} to exit after SIGTERM", gone, grace, interval=0.05)
        return
    except WaitTimeout:
        pass
    with suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    with suppress(WaitTimeout):  # a process stuck in the kernel (D state): we did what we could
        wait_for(f"process {pid} to exit after SIGKILL", gone, grace, interval=0.05)
