"""How long-running library calls report progress without printing.

The library calls a :class:`Progress`; the CLI draws it on the terminal.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Progress(Protocol):
    def phase(self, name: str) -> None:
        """A new phase began (``downloading``, ``mkfs``, ``booting`` ...)."""

    def advance(self, done: int, total: int | None = None) -> None:
        """Bytes (or steps) done in the current phase, out of ``total`` if known."""


class NoProgress:
    """Progress that goes nowhere: the default for library callers."""

    def phase(self, name: str) -> None:
        pass

    def advance(self, done: int, total: int | None = None) -> None:
        pass


class Labelled:
    """Another progress's phases, each prefixed with a label (``stock 1/3: booting``,
    ``web-2: waiting for SSH``): one run or one node of several."""

    def __init__(self, inner: Progress, label: str) -> None:
        self.inner, self.label = inner, label

    def phase(self, name: str) -> None:
        self.inner.phase(f"{self.label}: {name}")

    def advance(self, done: int, total: int | None = None) -> None:
        self.inner.advance(done, total)


class Serialized:
    """Another progress, called by one thread at a time (parallel work reporting to it)."""

    def __init__(self, inner: Progress) -> None:
        self.inner, self._lock = inner, threading.Lock()

    def phase(self, name: str) -> None:
        with self._lock:
            self.inner.phase(name)

    def advance(self, done: int, total: int | None = None) -> None:
        with self._lock:
            self.inner.advance(done, total)
