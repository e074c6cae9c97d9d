"""``vmctl image bake``: capture a provisioned VM as a new base image.

The guest is generalised (cloud-init reset, machine-id emptied, host keys,
Docker engine identity and logs removed), shut down, and its disk flattened
with its backing image into a new cached image. VMs made from it come up with
what the source VM had installed (Docker, say), and only a check left to run.
The source VM is left stopped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .._core.locks import file_lock
from .._core.proc import run
from .._core.progress import NoProgress, Progress
from .._core.render import render
from ..errors import ImageError
from ..hypervisor.disks import backing_file
from ..images.catalog import BOOT_FILES, Cache, CachedImage, new_record
from ..images.download import file_digest
from ..model.spec import check_name
from .machine import Machine


def bake(machine: Machine, new: str, cache: Cache | None = None, progress: Progress = NoProgress()) -> CachedImage:
    """Make cached image ``new`` from ``machine`` (which ends up stopped)."""
    check_name(new, "image name")
    cache = cache or Cache()
    parent = cache.require(machine.spec.image)
    if backing_file(Path(machine.record.disk)) != Path(parent.path):
        # its boot files and the version recorded would be the new image's, not the disk's
        raise ImageError(f"{machine.name} was made from an earlier build of {parent.name} than the cached one",
                         hint=f"make a new VM from the current {parent.name} and bake that")
    cache.root.mkdir(parents=True, exist_ok=True)
    with file_lock(cache.lock_path(new)):
        if cache.get(new) is not None:
            raise ImageError(
                f"image {new!r} already exists", hint=f"'vmctl image rm {new}' first, or pick another name"
            )
        progress.phase("generalising the guest")
        result = machine.run(
            "sudo bash -s", stdin=render("bake/generalize.sh.j2", user=machine.user).encode(), timeout=600
        )
        if result.rc != 0:
            raise ImageError(f"generalising {machine.name} failed (exit {result.rc}): {result.tail()}")
        progress.phase("shutting down")
        machine.stop(timeout=180)
        progress.phase("flattening the disk into a new base image")
        return _capture(machine, new, parent, cache)


def _capture(machine: Machine, new: str, parent: CachedImage, cache: Cache) -> CachedImage:
    tmp = cache.root / f".bake-{new}-{os.getpid()}.qcow2"
    made: list[Path] = []  # new files, removed again unless the record is published
    try:
        run(
            ["qemu-img", "convert", "-O", "qcow2", machine.record.disk, str(tmp)], what="qemu-img convert", timeout=1800
        )
        sha256 = file_digest(tmp, "sha256")
        disk = cache.versioned(new, sha256, "qcow2")
        extra: dict[str, str] = {}
        for kind, suffix in BOOT_FILES.items():
            if source := getattr(parent, kind):
                target = cache.versioned(new, sha256, suffix)
                made += [] if target.exists() else [target]
                shutil.copyfile(source, target)
                extra[kind] = str(target)
        made += [] if disk.exists() else [disk]
        tmp.replace(disk)
        record = new_record(
            new,
            disk,
            sha256,
            "bake",
            user=parent.user,
            kernel_cmdline=parent.kernel_cmdline,
            extra={"parent": parent.name, "parent_sha256": parent.sha256, "from_vm": machine.name},
            **extra,
        )
        published = cache.publish(record)
        made.clear()
        return published
    finally:
        tmp.unlink(missing_ok=True)
        for path in made:
            path.unlink(missing_ok=True)
