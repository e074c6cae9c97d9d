"""qcow2 overlays on cached base images."""

from __future__ import annotations

from pathlib import Path

from .proc import run


def create_overlay(base: Path, overlay: Path, size_gib: int | None = None) -> Path:
    """A qcow2 overlay backed by ``base`` (never written), optionally grown to ``size_gib``."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)]
    if size_gib:
        argv.append(f"{size_gib}G")
    overlay.parent.mkdir(parents=True, exist_ok=True)
    run(argv, what=f"creating overlay {overlay.name}")
    return overlay
