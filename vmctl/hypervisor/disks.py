"""qcow2 overlays on cached base images."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._core.proc import run


def create_overlay(base: Path, overlay: Path, size_gib: int | None = None) -> Path:
    """A qcow2 overlay (mode 0600) backed by ``base`` (never written), optionally grown to ``size_gib``."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)]
    if size_gib:
        argv.append(f"{size_gib}G")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(overlay, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # private from the first byte:
    os.fchmod(fd, 0o600)  # (a leftover of an interrupted run too)
    os.close(fd)
    run(argv, what=f"creating overlay {overlay.name}")  # qemu-img truncates it and keeps the mode
    return overlay


def backing_file(overlay: Path) -> Path | None:
    """The image ``overlay`` is backed by (read even while a VM has it open)."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(overlay)],
                          what=f"reading {overlay.name}").stdout)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return Path(backing) if backing else None
