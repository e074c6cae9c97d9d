"""Running host commands: every argument a list item, every run bounded."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandError, MissingDependency, VmctlError


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
