"""qcow2 overlays on cached base images."""

from __future__ import annotations

import json
from pathlib import Path

from .._core.proc import run


def create_overlay(base: Path, overlay: Path, size_gib: int | None = None) -> Path:
    """A qcow2 overlay backed by ``base`` (never written), optionally grown to ``size_gib``."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)]
    if size_gib:
        argv.append(f"{size_gib}G")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    run(argv, what=f"creating overlay {overlay.name}")
    return overlay


def backing_file(overlay: Path) -> Path | None:
    """The image ``overlay`` is backed by (read even while a VM has it open)."""
    info = json.loads(run(["qemu-img", "info", "-U", "--output=json", str(overlay)],
                          what=f"reading {overlay.name}").stdout)
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    return Path(backing) if backing else None
