from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from vmctl._core.locks import file_lock, is_held, replacing
from vmctl._core.progress import NoProgress
from vmctl.errors import WaitTimeout


def test_replacing_shows_the_old_file_or_the_whole_new_one(tmp_path: Path) -> None:
    target = tmp_path / "seed.iso"
    target.write_bytes(b"old")
    with replacing(target, 0o600) as f:
        f.write(b"new, ")
        assert target.read_bytes() == b"old"  # not yet
        f.write(b"whole")
    assert target.read_bytes() == b"new, whole" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(RuntimeError), replacing(target) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new, whole"
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]  # nothing half-made left behind


def test_a_lock_unlinked_by_its_holder_is_not_shared_by_two_waiters(tmp_path: Path) -> None:
    """down unlinks a VM's lock while holding it; the next two up's must still exclude each other."""
    lock = tmp_path / "web.lock"
    inside: list[str] = []
    overlap: list[bool] = []
    ready, unlinked = threading.Event(), threading.Event()

    def holder() -> None:
        with file_lock(lock):
            ready.set()
            time.sleep(0.3)
            lock.unlink()  # as Host.delete does
            unlinked.set()
            time.sleep(0.1)

    def waiter(name: str) -> None:
        (ready if name == "a" else unlinked).wait()  # b comes after the unlink, a before
        with file_lock(lock):
            overlap.append(bool(inside))
            inside.append(name)
            time.sleep(0.3)
            inside.remove(name)

    threads = [threading.Thread(target=holder), *(threading.Thread(target=waiter, args=(n,)) for n in "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [False, False]


def test_a_waiter_says_whom_it_waits_for_and_gives_up(tmp_path: Path) -> None:
    lock = tmp_path / "web.lock"
    phases: list[str] = []

    class Recorder(NoProgress):
        def phase(self, name: str) -> None:
            phases.append(name)

    held = os.open(lock, os.O_RDWR | os.O_CREAT)
    os.write(held, f"{os.getpid()}\n".encode())
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with pytest.raises(WaitTimeout) as e, file_lock(lock, timeout=0.3, what="VM web", progress=Recorder()):
            pass
    finally:
        os.close(held)
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert phases == [f"waiting for VM web (held by PID {os.getpid()}: {comm})"]
    assert "VM web" in str(e.value) and f"PID {os.getpid()}" in str(e.value)
    with file_lock(lock, timeout=0.3):  # free again: taken at once
        assert lock.read_text() == f"{os.getpid()}\n"
    with file_lock(tmp_path / "new.lock"):
        assert stat.S_IMODE((tmp_path / "new.lock").stat().st_mode) == 0o600


def test_is_held_sees_a_holder_and_never_waits(tmp_path: Path) -> None:
    lock = tmp_path / "vm.lock"
    assert not is_held(lock)  # no file
    with file_lock(lock):
        assert is_held(lock)  # (here, held by this process through another open file)
    assert lock.exists() and not is_held(lock)
