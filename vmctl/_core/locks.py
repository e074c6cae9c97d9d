"""Files two vmctl processes never race on: locks, and writes that appear whole or not at all."""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .poll import Look, wait_for
from .progress import NoProgress, Progress

LOCK_TIMEOUT = 3600.0  # longer than any one vmctl operation's own bounded waits


@contextmanager
def file_lock(path: Path, *, timeout: float = LOCK_TIMEOUT, what: str = "",
              progress: Progress = NoProgress()) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block.

    The holder may unlink the lock file when what it guards is gone (``down``
    removes a VM's lock): a waiter that then gets the lock on the unlinked file
    sees that its inode is no longer ``path``'s and locks the new file instead,
    so two holders never hold "the same" lock at once. While it waits it says so
    through ``progress`` (naming the holder's PID), and it gives up after
    ``timeout`` seconds with :class:`WaitTimeout`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _acquire(fd, path, started, timeout, what or f"the lock {path}", progress)
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, path):
            break
        os.close(fd)  # the file was unlinked (or replaced) while we waited: lock the new one
    try:
        _note_holder(fd)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_held(path: Path) -> bool:
    """Whether some process holds the lock at ``path`` now (this one too, through another
    :func:`file_lock`): a quick look, never a wait."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (closing drops the shared lock, if it was taken)
    return False


def _acquire(fd: int, path: Path, started: float, timeout: float, what: str, progress: Progress) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    progress.phase(f"waiting for {what} ({_holder(path)})")

    def locked(look: Look) -> bool:
        look.seen = _holder(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    wait_for(what, locked, timeout, since=started, interval=0.1,
             hint=f"another vmctl holds {path}; wait for it to finish, or stop it")


def _is_current(fd: int, path: Path) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)


def _note_holder(fd: int) -> None:
    """Write the holder's PID into the lock, for a waiter's message (best effort)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _holder(path: Path) -> str:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "held by another process"
    try:  # comm, not cmdline: reading a stuck (state D) process's cmdline can block
        command = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        command = "gone"
    return f"held by PID {pid}: {command}"


@contextmanager
def replacing(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A new file, written in the block, that takes ``path``'s place when the block
    ends without error: readers see the old file or the whole new one, never a part.
    ``mode`` applies from the start (a private key is never world-readable)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
