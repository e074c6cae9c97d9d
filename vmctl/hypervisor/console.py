"""Reading a guest's serial console log: milestones of a boot, and its tail."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._core.poll import Look, wait_for

# What the console shows at each milestone of a Debian boot, in order.
MILESTONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kernel", ("Linux version",)),
    ("userspace", ("systemd[1]:", "Run /init", "Welcome to")),
    ("login", ("login:",)),
)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def tail(text: str, lines: int = 10) -> list[str]:
    """The last non-empty lines, without terminal colour codes."""
    clean = (ANSI.sub("", line).rstrip() for line in text.splitlines())
    return [line for line in clean if line.strip()][-lines:]


def reached(text: str) -> list[str]:
    """The milestones the console text shows, in order."""
    return [name for name, markers in MILESTONES if any(m in text for m in markers)]


@dataclass
class BootWatch:
    """Watches a serial log and notes when each milestone first appeared."""

    path: Path
    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)

    def poll(self) -> str:
        text = read(self.path)
        for name in reached(text):
            self.seen.setdefault(name, round(time.monotonic() - self.started, 2))
        return text

    def wait_for(self, milestone: str, timeout: float, interval: float = 0.25) -> dict[str, float]:
        """Wait until ``milestone`` shows, ``timeout`` seconds from the watch's start."""

        def shown(_: Look) -> dict[str, float] | None:
            self.poll()
            return dict(self.seen) if milestone in self.seen else None

        return wait_for(f"the {milestone} milestone on the serial console", shown, timeout,
                        interval=interval, since=self.started, describe=lambda: "".join(tail(read(self.path), 1)))
