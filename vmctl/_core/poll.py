"""The one way vmctl waits: look, and look again, until a check holds or the time is up.

Every bounded wait in vmctl goes through :func:`wait_for`, so every wait has a
deadline, names what it waited for, and says what it saw last when it gives up::

    def check(look: Look) -> str | None:
        look.seen = f"state {machine.state}"
        return machine.ip                     # falsy: not yet

    ip = wait_for("an address", check, timeout=300)

A check may raise to end the wait early (the VM crashed, a key did not match):
that error goes to the caller as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ..errors import WaitTimeout

T = TypeVar("T")

POLL = 0.2  # seconds between looks: prompt to notice, cheap for the host


@dataclass
class Look:
    """What one wait has seen so far; a check writes ``seen``, read when time runs out."""

    seen: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def wait_for(
    what: str,
    check: Callable[[Look], T | None],
    timeout: float,
    *,
    interval: float = POLL,
    seen: str = "",
    describe: Callable[[], str] | None = None,
    since: float | None = None,
    hint: str = "",
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy,
    and return that; after ``timeout`` seconds raise :class:`WaitTimeout` naming
    ``what`` and the last thing seen (``describe()`` if given, else ``look.seen``).

    ``since`` (a :func:`time.monotonic` value) starts the clock earlier than now,
    for a wait whose budget began before the call.
    """
    look = Look(seen=seen, started=time.monotonic() if since is None else since)
    while True:
        if result := check(look):
            return result
        if look.elapsed >= timeout:
            raise WaitTimeout(what, timeout, describe() if describe else look.seen, hint=hint)
        time.sleep(interval)
