"""How long-running library calls report progress without printing.

The library calls a :class:`Progress`; the CLI draws it on the terminal.
"""

from __future__ import annotations

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
