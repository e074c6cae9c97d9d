"""``vmctl image bake``: capture a provisioned VM as a new base image.

The guest is generalised (cloud-init reset, machine-id emptied, host keys,
Docker engine identity and logs removed), shut down, and its disk flattened
with its backing image into a new cached image. VMs made from it come up with
what the source VM had installed (Docker, say), and only a check left to run.
The source VM is left stopped. The new disk is standalone (``qemu-img convert``
writes no backing file), so removing the parent image later does not break it.

A bake killed half-way leaves ``.bake-NEW-PID.qcow2`` in the cache (and, from an
image, its temporary VM): the next bake removes them.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from .._core.locks import file_lock
from .._core.proc import run, terminate
from .._core.progress import NoProgress, Progress
from .._core.render import render
from ..errors import ConfigError, ImageError
from ..hypervisor.disks import backing_file
from ..images.catalog import BOOT_FILES, Cache, CachedImage, new_record
from ..images.download import file_digest
from ..images.leftovers import GRACE, qemu_img_on
from ..model.spec import MachineSpec, check_name
from ..model.uri import require_local
from .host import Host
from .machine import Machine


def bake(machine: Machine, new: str, cache: Cache | None = None, progress: Progress = NoProgress()) -> CachedImage:
    """Make cached image ``new`` from ``machine`` (which ends up stopped)."""
    check_name(new, "image name")
    require_local(machine.host.uri, "bake")  # it flattens the VM's disk with qemu-img, here
    cache = cache or Cache()
    cache.root.mkdir(parents=True, exist_ok=True)
    with file_lock(cache.lock_path(new)):
        return _bake_locked(machine, new, cache, progress)


def bake_from_image(
    host: Host, new: str, image: str, docker: bool = False, cache: Cache | None = None,
    progress: Progress = NoProgress(),
) -> CachedImage:
    """Make cached image ``new`` from a temporary VM of ``image`` (with Docker installed
    when ``docker``), deleted afterwards.

    The VM is :func:`temp_vm_name`; a marker in the cache says a bake made it, so when a
    killed bake left it behind, the next bake of ``new`` deletes it (and its seed, which
    holds the VM's private host key) instead of refusing or reusing it.
    """
    check_name(new, "image name")
    check_name(image, "image name")
    require_local(host.uri, "bake")
    cache = cache or Cache()
    temp, marker = temp_vm_name(new), cache.root / f".bake-{new}.vm"
    cache.root.mkdir(parents=True, exist_ok=True)
    with file_lock(cache.lock_path(new)):
        _refuse_existing(cache, new)
        _clear_temp_vm(host, temp, marker, progress)
        marker.write_text(temp + "\n")
        vm: Machine | None = None
        try:
            vm = host.up(MachineSpec(temp, image=image, docker=docker), progress=progress,
                         forward=False)  # a VM of minutes, baked and deleted: no socket or ports
            return _bake_locked(vm, new, cache, progress)
        finally:
            progress.phase(f"deleting the temporary VM {temp}")
            if vm is not None:
                vm.down()  # closes its SSH connection first
            else:
                host.delete(temp)  # what a failed up left, if anything
            marker.unlink(missing_ok=True)


def temp_vm_name(new: str) -> str:
    """``bake-NEW``, the temporary VM of ``bake_from_image``: a valid VM name however long
    ``new`` is (shortened, then told apart by a digest of ``new``; never ending in ``-``)."""
    name = f"bake-{new}"
    if len(name) > 63:
        name = f"{name[:56].rstrip('-')}-{hashlib.sha256(new.encode()).hexdigest()[:6]}"
    return check_name(name, "VM name")


def _clear_temp_vm(host: Host, temp: str, marker: Path, progress: Progress) -> None:
    """Delete the temporary VM a killed bake left (the marker says a bake made it)."""
    if not host.hv.exists(temp):
        return
    if not marker.exists():
        raise ConfigError(f"a VM named {temp} exists, and the bake needs that name for its temporary VM",
                          hint=f"'vmctl down {temp}' if you no longer need it, or bake under another name")
    progress.phase(f"deleting {temp}, left by an interrupted bake")
    host.delete(temp)


def _refuse_existing(cache: Cache, new: str) -> None:
    if cache.get(new) is not None:
        raise ImageError(f"image {new!r} already exists", hint=f"'vmctl image rm {new}' first, or pick another name")


def _bake_locked(machine: Machine, new: str, cache: Cache, progress: Progress) -> CachedImage:
    """:func:`bake`, the caller holding ``new``'s lock."""
    _refuse_existing(cache, new)
    parent = cache.require(machine.spec.image)
    backing = backing_file(Path(machine.record.disk))
    # the cached file itself (a VM older than storage pools), or the hypervisor's copy of it:
    # a cached version's file name (NAME.SHA.qcow2) is its volume's name too
    if backing is None or backing.name != Path(parent.path).name:
        # its boot files and the version recorded would be the new image's, not the disk's
        raise ImageError(f"{machine.name} was made from an earlier build of {parent.name} than the cached one",
                         hint=f"make a new VM from the current {parent.name} and bake that")
    for stale in cache.stale_work("bake", new):
        progress.phase(f"removing {stale.name}, left by an interrupted bake")
        for pid in qemu_img_on(stale):  # its qemu-img outlives it, and holds the VM's disk
            terminate(pid, grace=GRACE)
        stale.unlink(missing_ok=True)
    if machine.state != "running":  # a bake killed after it shut the VM down: generalise it again
        progress.phase(f"starting {machine.name}")
        machine.start(forward=False)
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
    tmp = cache.work("bake", new)
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
            fast_boot=parent.fast_boot,
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
