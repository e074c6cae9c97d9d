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


# Terminal control sequences (ECMA-48), 7-bit and 8-bit forms, a truncated one too:
# strings (OSC, DCS, SOS, PM, APC) up to BEL or ST (or the line's end), CSI, other ESC sequences.
_STRING = r"(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
_CSI = r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
_ESC = r"\x1b[\x20-\x2f]*[\x30-\x7e]?"
SEQUENCES = re.compile(f"{_STRING}|{_CSI}|{_ESC}")
# what is left of C0 (but tab and newline), DEL, C1; a lone carriage return among them
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """``text`` without anything a terminal would act on: escape and control sequences,
    control characters (tab and newline stay), carriage returns (``\\r\\n`` becomes ``\\n``)."""
    return CONTROLS.sub("", SEQUENCES.sub("", text).replace("\r\n", "\n"))


def tail(text: str, lines: int = 10) -> list[str]:
    """The last non-empty lines, safe to show on a terminal (see :func:`clean`)."""
    clean_lines = (line.rstrip() for line in clean(text).split("\n"))
    return [line for line in clean_lines if line.strip()][-lines:]


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
