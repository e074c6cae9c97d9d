"""Progress on a terminal: the phase, the time elapsed, and bytes when known.

Commands get it through :func:`vmctl.cli.output.progress` (which picks no
progress at all with --json); only that module imports this one.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class TerminalProgress:
    """Draws ``[  12.3s] phase  45% 120/260 MiB`` on stderr.

    On a terminal the line is redrawn in place, twice a second; elsewhere (a
    log, a pipe) each phase is printed once, with the time it started.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._phase = ""
        self._detail = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> TerminalProgress:
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
        if self.tty and self._phase:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{self.elapsed():6.1f}s] done\n" if exc[0] is None and self._phase else "")
        self.stream.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def phase(self, name: str) -> None:
        with self._lock:
            if self.tty and self._phase:
                self.stream.write(f"\r\033[K[{self.elapsed():6.1f}s] {self._phase}\n")
            self._phase, self._detail = name, ""
            if not self.tty:
                self.stream.write(f"[{self.elapsed():6.1f}s] {name}\n")
                self.stream.flush()
        self._draw()

    def advance(self, done: int, total: int | None = None) -> None:
        mib = done / 2**20
        if total:
            self._detail = f"{100 * done // total:3d}% {mib:.0f}/{total / 2**20:.0f} MiB"
        else:
            self._detail = f"{mib:.0f} MiB"

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def _draw(self) -> None:
        if not self.tty or not self._phase:
            return
        with self._lock:
            self.stream.write(f"\r\033[K[{self.elapsed():6.1f}s] {self._phase}  {self._detail}")
            self.stream.flush()
