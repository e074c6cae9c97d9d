"""Everything the CLI writes besides a command's own table: JSON, progress, errors.

One module so that every command prints an error the same way (``error: ...``
then ``hint: ...``, exit 1; exit 130 on Ctrl-C), emits the same JSON, and draws
the same progress. It is light on purpose (click and the standard library):
every command module imports it at top level, and ``vmctl --help`` loads it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .._core.progress import NoProgress, Progress
from ..errors import VmctlError
from .progress import TerminalProgress

if TYPE_CHECKING:
    from ..images.catalog import CachedImage


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON; with --json this is all that reaches stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def progress(as_json: bool) -> AbstractContextManager[Progress]:
    """Progress drawn on stderr, or none with --json (whose stdout a script parses)."""
    if as_json:
        return nullcontext(NoProgress())
    return TerminalProgress()


class LineProgress:
    """Progress of several VMs at once: one line per phase, prefixed with the VM's name.

    A redrawn line (:class:`TerminalProgress`) cannot show parallel work, so each
    phase is printed once, under a lock shared by the VMs' threads.
    """

    def __init__(self, name: str, started: float, lock: threading.Lock) -> None:
        self.name, self.started, self.lock = name, started, lock

    def phase(self, name: str) -> None:
        with self.lock:
            click.echo(f"[{time.monotonic() - self.started:6.1f}s] {self.name}: {name}", err=True)

    def advance(self, done: int, total: int | None = None) -> None:
        pass


def print_error(error: VmctlError) -> None:
    """``error: MESSAGE`` and, when the error has one, ``hint: HINT`` on stderr."""
    click.echo(f"error: {error.message}", err=True)
    if error.hint:
        click.echo(f"hint: {error.hint}", err=True)


def fail(*errors: VmctlError) -> NoReturn:
    """Print each error (several when parallel work failed in more than one place), exit 1."""
    for error in errors:
        print_error(error)
    sys.exit(1)


def usage_error(error: click.UsageError) -> NoReturn:
    """A command line click could not parse: one line saying why, where to look, exit 1."""
    command = error.ctx.command_path if error.ctx else "vmctl"
    click.echo(f"error: {' '.join(error.format_message().split())}", err=True)
    click.echo(f"hint: '{command} --help' shows the arguments, options and examples", err=True)
    sys.exit(1)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Turn a :class:`VmctlError` into its message plus hint and exit 1, Ctrl-C into exit 130.

    The root group wraps every command in this, so no command catches errors itself
    and a user never sees a traceback for a failure vmctl understands.
    """
    try:
        yield
    except VmctlError as e:
        fail(e)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)


def image_done(image: CachedImage, as_json: bool) -> None:
    """The one-line summary (or JSON record) of an image built, pulled or baked."""
    if as_json:
        emit_json(image.to_dict())
    else:
        click.echo(f"{image.name}: {image.path} ({image.size / 2**20:.0f} MiB, sha256 {image.sha256[:12]})")
