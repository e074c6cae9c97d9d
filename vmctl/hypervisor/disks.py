"""qcow2 overlays on cached base images."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._core.proc import run
from ..model.mbr import SECTOR, grown


def create_overlay(base: Path, overlay: Path, size_gib: int | None = None) -> Path:
    """A qcow2 overlay (mode 0600) backed by ``base`` (never written), optionally grown to ``size_gib``."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)]
    if size_gib:
        argv.append(f"{size_gib}G")
    _private(overlay)
    run(argv, what=f"creating overlay {overlay.name}")  # qemu-img truncates it and keeps the mode
    return overlay


def _private(path: Path) -> None:
    """An empty file of mode 0600 at ``path``: private from the first byte (a leftover of an
    interrupted run too); qemu-img truncates it and keeps the mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)


def copy_disk(source: Path, target: Path, base: Path) -> Path:
    """A new overlay on ``base`` holding what ``source`` (an overlay on the same base, its
    VM stopped) changed: a clone's disk, sharing the base image; snapshots stay behind."""
    argv = ["qemu-img", "convert", "-q", "-O", "qcow2", "-B", str(base), "-F", "qcow2", str(source), str(target)]
    _private(target)
    run(argv, what=f"copying {source.name} to {target.name}", timeout=3600)
    return target


def backing_file(overlay: Path) -> Path | None:
    """The image ``overlay`` is backed by (read even while a VM has it open)."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(overlay)],
                          what=f"reading {overlay.name}").stdout)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return Path(backing) if backing else None


def snapshot_sizes(disk: Path) -> dict[str, int]:
    """Each internal snapshot's saved memory and device state in bytes, by name (``-U``:
    the disk may be in use); a disk-only snapshot has 0. The disk clusters a snapshot
    keeps are shared with the VM's current state and have no size of their own."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(disk)],
                          what=f"reading the snapshots of {disk.name}").stdout)
    return {str(s["name"]): int(s.get("vm-state-size", 0)) for s in info.get("snapshots", [])}


def grow_root_partition(disk: Path) -> bool:
    """Extend the only partition of a new VM's disk (``disk``, not yet in use) to the
    disk's end (see :mod:`vmctl.model.mbr`); False when its table is not one vmctl
    grows. qemu-io reads and writes the first sector through the overlay, so the
    shared base image is never written."""
    info = json.loads(run(["qemu-img", "info", "--output=json", str(disk)], what=f"reading {disk.name}").stdout)
    dump = run(["qemu-io", "-r", "-c", f"read -v 0 {SECTOR}", str(disk)], what=f"reading {disk.name}'s MBR").stdout
    new = grown(hexdump_bytes(dump), int(info["virtual-size"]) // SECTOR)
    if new is None:
        return False
    sector = disk.with_name(f".{disk.name}.mbr")
    try:
        with os.fdopen(os.open(sector, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(new)
        run(["qemu-io", "-c", f"write -q -s {sector} 0 {SECTOR}", str(disk)], what=f"writing {disk.name}'s MBR")
    finally:
        sector.unlink(missing_ok=True)
    return True


def hexdump_bytes(text: str) -> bytes:
    """The bytes of ``qemu-io -c 'read -v'``'s dump (``00000000:  eb 63 90 ...  .c..``)."""
    out = bytearray()
    for line in text.splitlines():
        offset, sep, rest = line.partition(":  ")
        if not sep or len(offset) != 8:
            continue
        out += bytes.fromhex(rest[:47])  # 16 bytes as "xx xx ... xx"; the text column follows
    return bytes(out)
