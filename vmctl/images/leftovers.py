"""What a killed image build leaves behind, found and undone.

A build killed with SIGKILL leaves its work directory (``.build-NAME-PID``,
gigabytes) and may leave more: mmdebstrap still running, with its children
chrooted into the tree; mmdebstrap's ``/proc``, ``/sys`` and ``/dev`` mounted in
the tree, and the root partition mounted at ``mnt/`` from a loop device on the
disk file. :func:`clear` stops those processes, unmounts, detaches the loop
devices and only then removes the directory: it never removes a tree that still
has something mounted in it (that would delete the host's ``/dev``).

Whether a leftover still has a live owner is told by a lock (:func:`unowned`):
its owner held it until it was killed, and the kernel released it then.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from .._core.locks import file_lock
from .._core.proc import run, terminate
from ..errors import ImageError, WaitTimeout

PROC = Path("/proc")
SYS_BLOCK = Path("/sys/block")
GRACE = 5.0  # seconds an orphan gets to exit after SIGTERM, before SIGKILL


@contextmanager
def unowned(lock: Path) -> Iterator[bool]:
    """Whether no live process holds ``lock``; when none does, it is held for the block."""
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(lock, timeout=0))
            free = True
        except WaitTimeout:  # held: its owner lives
            free = False
        yield free


def _under(path: str | Path, root: Path) -> bool:
    return Path(path).is_absolute() and Path(os.path.normpath(path)).is_relative_to(root)


# mounts --------------------------------------------------------------------------------


def _unescape(field: str) -> str:
    """A mountinfo path: spaces, tabs, newlines and backslashes are octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts_under(root: Path, mountinfo: str) -> list[Path]:
    """The mount points at or under ``root`` in ``mountinfo`` (proc(5)), deepest first."""
    fields = (line.split() for line in mountinfo.splitlines())
    points = {Path(_unescape(f[4])) for f in fields if len(f) > 4}  # the fifth field: the mount point
    return sorted((p for p in points if _under(p, root)), key=lambda p: (len(p.parts), str(p)), reverse=True)


def _mounts(root: Path) -> list[Path]:
    return mounts_under(root, (PROC / "self/mountinfo").read_text())


def unmount_all(root: Path) -> None:
    """Unmount everything under ``root``, deepest first (lazily when a mount is busy)."""
    for point in _mounts(root):
        if not run(["umount", str(point)], what=f"unmounting {point}", check=False).ok:
            run(["umount", "--lazy", str(point)], what=f"unmounting {point}", check=False)


# loop devices --------------------------------------------------------------------------


def loops_on(root: Path) -> list[str]:
    """The loop devices (``/dev/loopN``) whose backing file is under ``root``."""
    found = []
    for backing in sorted(SYS_BLOCK.glob("loop*/loop/backing_file")):
        try:
            path = backing.read_text().strip().removesuffix(" (deleted)")
        except OSError:
            continue
        if _under(path, root):
            found.append(f"/dev/{backing.parent.parent.name}")
    return found


def detach_loops(root: Path) -> None:
    for device in loops_on(root):
        run(["losetup", "--detach", device], what=f"detaching {device}", check=False)


# processes -----------------------------------------------------------------------------


def _read(pid: int, name: str) -> str:
    try:
        return (PROC / str(pid) / name).read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _link(pid: int, name: str) -> str:
    try:
        return os.readlink(PROC / str(pid) / name)
    except OSError:
        return ""


def _state(pid: int) -> str:
    """The state letter in /proc/PID/stat (after the name, which may hold ``)``)."""
    fields = _read(pid, "stat").rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


def works_in(pid: int, root: Path) -> bool:
    """Whether process ``pid`` works on ``root``: any process chrooted into it, or an
    mmdebstrap (the kernel's name for it, then its command line) whose working
    directory or arguments are in it.

    The command line is read only once the name says mmdebstrap, and not in state D:
    reading it takes the process's memory-map lock, which a process stuck in the
    kernel may hold for good."""
    if _under(_link(pid, "root"), root):
        return True
    if _read(pid, "comm").strip() != "mmdebstrap":
        return False
    if _under(_link(pid, "cwd"), root):
        return True
    if _state(pid) == "D":
        return False
    args = [part for arg in _read(pid, "cmdline").split("\0") for part in arg.split("=", 1)]  # --opt=PATH too
    return any(_under(arg, root) for arg in args)


def _parent(pid: int) -> int:
    fields = _read(pid, "stat").rsplit(")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def processes_in(root: Path) -> list[int]:
    """The PIDs working on ``root`` (see :func:`works_in`) and those they started
    (apt and dpkg outside the chroot, say), parents first; never this process."""
    parents = {int(p.name): _parent(int(p.name)) for p in PROC.iterdir() if p.name.isdigit()}
    parents.pop(os.getpid(), None)
    found = [pid for pid in sorted(parents) if works_in(pid, root)]
    for pid in found:  # grows while it is walked: children, grandchildren...
        found += [child for child, parent in sorted(parents.items()) if parent == pid and child not in found]
    return found


def qemu_img_on(path: Path) -> list[int]:
    """The ``qemu-img`` processes that have ``path`` open: a killed bake's ``convert``
    goes on writing its work file, and holds its source disk's lock meanwhile."""
    target, found = str(path.resolve()), []
    for proc in PROC.iterdir():
        if not proc.name.isdigit() or _read(int(proc.name), "comm").strip() != "qemu-img":
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        if any(_link(int(proc.name), f"fd/{fd.name}") == target for fd in fds):
            found.append(int(proc.name))
    return found


# all of it -------------------------------------------------------------------------------


def clear(path: Path, rounds: int = 5) -> None:
    """Stop what works in ``path``, unmount what is mounted in it, detach the loop
    devices on its files, then remove it; :class:`ImageError` if a mount stays.

    An orphan mmdebstrap may start another process (apt, dpkg) between the look at
    /proc and its end, which then writes into ``path`` while it is removed: so all of
    it is done again, up to ``rounds`` times, until the removal succeeds."""
    if not path.exists():
        return
    root = path.resolve()
    for attempt in range(1, rounds + 1):
        for pid in processes_in(root):
            terminate(pid, grace=GRACE)
        unmount_all(root)
        detach_loops(root)
        if stuck := _mounts(root):
            raise ImageError(f"cannot remove {path}: {stuck[0]} is still mounted",
                             hint=f"unmount it ('umount --lazy {stuck[0]}') and run the command again")
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            return
        except OSError as e:
            if attempt == rounds:
                raise ImageError(f"cannot remove {path}: {e.strerror}",
                                 hint="remove it by hand and run the command again") from e
            time.sleep(1)
