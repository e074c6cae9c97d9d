"""Local image builds: mmdebstrap from the Debian mirror to a BIOS-bootable qcow2.

The disk is one MBR partition at sector 2048 holding an ext4 root filesystem
(filled by ``mkfs.ext4 -d``, no mount needed) with EXTLINUX as boot loader.
Partition scanning of loop devices does not work on every host, so the
partition is reached with ``losetup --offset`` only to install EXTLINUX.
The kernel and initrd are kept beside the image for direct kernel boot.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._core.locks import file_lock
from .._core.paths import debian_mirror
from .._core.proc import run
from .._core.progress import NoProgress, Progress
from .._core.render import render
from ..errors import ImageError
from .catalog import BOOT_FILES, FAST_BOOT, Build, Cache, CachedImage, check_mirror, new_record, recipe_digest
from .download import file_digest
from .initramfs import build_lean
from .leftovers import clear

SECTOR = 512
PART_START = 2048  # sectors: 1 MiB, where every partitioning tool puts it
ROOT_LABEL = "vmctl-root"
MBR_CODE = Path("/usr/lib/EXTLINUX/mbr.bin")


def mbr(disk_bytes: int, boot_code: bytes) -> bytes:
    """A 512-byte MBR: boot code, one active Linux partition from 1 MiB to the end."""
    if len(boot_code) > 440:
        raise ImageError(f"MBR boot code is {len(boot_code)} bytes; at most 440 fit")
    sectors = disk_bytes // SECTOR - PART_START
    chs = b"\xfe\xff\xff"  # "use LBA" marker
    entry = struct.pack("<B3sB3sII", 0x80, chs, 0x83, chs, PART_START, sectors)
    return boot_code.ljust(446, b"\0") + entry + bytes(48) + b"\x55\xaa"


def mmdebstrap_argv(build: Build, rootfs: Path, mirror: str | None = None) -> list[str]:
    """mmdebstrap's command line: ``build`` was checked when it was made, ``mirror`` is
    checked here, and ``--`` ends the options, so no value is ever taken for one."""
    return [
        "mmdebstrap",
        "--variant=apt",
        "--components=main",
        "--include=" + ",".join(build.packages),
        "--",
        build.suite,
        str(rootfs),
        check_mirror(mirror, "mirror ($VMCTL_DEBIAN_MIRROR)") if mirror else build.mirror,
    ]


def configure_rootfs(rootfs: Path, build: Build) -> None:
    """Make the tree a clean template: no identity, no host leftovers."""
    etc = rootfs / "etc"
    (etc / "fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n")
    (etc / "hostname").write_text("debian\n")
    (etc / "machine-id").write_text("")
    (rootfs / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (etc / "resolv.conf").unlink(missing_ok=True)
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    cloud = etc / "cloud/cloud.cfg.d/90-vmctl.cfg"
    cloud.write_text(render("image/cloud.cfg.j2"))
    install_fast_boot(rootfs)
    extlinux = rootfs / "boot/extlinux"
    extlinux.mkdir(parents=True, exist_ok=True)
    (extlinux / "extlinux.conf").write_text(
        render("image/extlinux.conf.j2", cmdline=build.kernel_cmdline)
    )
    shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
    for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    mask_generators(rootfs)
    stamp_updated(rootfs)


# systemd generators that find nothing in a vmctl VM (no crypttab, integritytab or
# veritytab, no swap to resume from, an MBR disk, no offline update), yet each is a
# process start before the first unit runs: 2.4 s for all thirteen, measured under TCG.
IDLE_GENERATORS = (
    "systemd-cryptsetup-generator", "systemd-integritysetup-generator", "systemd-veritysetup-generator",
    "systemd-hibernate-resume-generator", "systemd-gpt-auto-generator", "systemd-system-update-generator",
)


def mask_generators(rootfs: Path) -> None:
    """Mask :data:`IDLE_GENERATORS` the way systemd documents: a link to /dev/null in /etc."""
    masks = rootfs / "etc/systemd/system-generators"
    masks.mkdir(parents=True, exist_ok=True)
    for name in IDLE_GENERATORS:
        (masks / name).unlink(missing_ok=True)
        (masks / name).symlink_to("/dev/null")


def stamp_updated(rootfs: Path) -> None:
    """Record that /etc and /var are up to date with /usr, as systemd-update-done does.

    The packages' maintainer scripts already did what ``ConditionNeedsUpdate=``
    units would do at first boot (Debian's systemd runs systemd-sysusers when it
    is installed), so sysusers no longer runs again before udev: 1 s under TCG.
    """
    usr = (rootfs / "usr").stat().st_mtime_ns
    for directory in ("etc", "var"):
        stamp = rootfs / directory / ".updated"
        stamp.write_text("# Written by vmctl's image build, as systemd-update-done would:\n"
                         "# /etc and /var are up to date with /usr. See systemd-update-done.service(8).\n"
                         f"TIMESTAMP_NSEC={usr}\n")
        os.utime(stamp, ns=(usr, usr))


def install_fast_boot(rootfs: Path) -> None:
    """The fast profile's units, script and network file (inert unless the kernel command line wants them)."""
    units = rootfs / "etc/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in ("vmctl-fast-boot.service", "vmctl-grow-root.service", "vmctl-cloud-init.service",
                 "vmctl-cloud-config.service", "vmctl-cloud-final.service", "vmctl-ssh-first.target",
                 "vmctl-ready.target"):
        (units / unit).write_text(render(f"image/{unit}.j2"))
    network = rootfs / "etc/systemd/network/10-vmctl-fast-eth0.network"
    network.parent.mkdir(parents=True, exist_ok=True)
    network.write_text(render("image/vmctl-fast-eth0.network.j2"))
    (rootfs / "var/lib/vmctl").mkdir(parents=True, exist_ok=True)  # the scripts' per-instance stamps
    for name in ("fast-boot", "grow-root"):
        script = rootfs / "usr/lib/vmctl" / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(render(f"image/vmctl-{name}.sh.j2"))
        script.chmod(0o755)


def boot_files(rootfs: Path) -> tuple[Path, Path]:
    """The kernel and initrd the image boots (``/vmlinuz``, ``/initrd.img`` links)."""
    kernel, initrd = rootfs / "vmlinuz", rootfs / "initrd.img"
    if not (kernel.exists() and initrd.exists()):
        raise ImageError("the built tree has no /vmlinuz and /initrd.img; is a kernel package included?")
    return kernel.resolve(), initrd.resolve()


def make_disk(rootfs: Path, raw: Path, size_gib: int) -> None:
    size = size_gib << 30
    with raw.open("wb") as f:
        f.truncate(size)
        f.write(mbr(size, MBR_CODE.read_bytes()[:440]))
    fs_kib = (size - PART_START * SECTOR) // 1024
    run(
        ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-O", "^64bit",
         "-E", f"offset={PART_START * SECTOR}", "-d", str(rootfs), str(raw), f"{fs_kib}k"],
        what="mkfs.ext4",
        timeout=600,
    )


@contextmanager
def _mounted_partition(raw: Path, mountpoint: Path) -> Iterator[Path]:
    loop = run(
        ["losetup", "--find", "--show", "--offset", str(PART_START * SECTOR), str(raw)],
        what="attaching a loop device",
    ).stdout.strip()
    try:
        mountpoint.mkdir(exist_ok=True)
        run(["mount", loop, str(mountpoint)], what="mounting the root filesystem")
        try:
            yield mountpoint
        finally:
            run(["umount", str(mountpoint)], what="unmounting the root filesystem")
    finally:
        run(["losetup", "--detach", loop], what="detaching the loop device", check=False)


def install_bootloader(raw: Path, workdir: Path) -> None:
    with _mounted_partition(raw, workdir / "mnt") as mnt:
        run(["extlinux", "--install", str(mnt / "boot/extlinux")], what="extlinux --install")


def build(
    name: str, recipe: Build, user: str, cache: Cache, progress: Progress = NoProgress()
) -> CachedImage:
    """Build image ``name`` from ``recipe``; a cached one is returned as it is."""
    mirror = check_mirror(debian_mirror(recipe.mirror), "mirror ($VMCTL_DEBIAN_MIRROR)")
    lock = cache.lock_path(name)  # checks the name before any directory is made
    cache.root.mkdir(parents=True, exist_ok=True)
    with file_lock(lock):
        clear_stale_builds(cache, name, progress)
        cached = cache.get(name)
        if cached is not None and (cached.source != "build" or cached.recipe == recipe_digest(recipe)):
            return cached
        workdir = cache.work("build", name)
        workdir.mkdir(mode=0o700)  # the tree has host keys and shadow files until configure_rootfs
        try:
            return _build_in(workdir, name, recipe, mirror, user, cache, progress)
        finally:
            clear(workdir)  # whatever mmdebstrap or a failed step left mounted or running in it


def clear_stale_builds(cache: Cache, name: str, progress: Progress) -> None:
    """Remove the work directories of builds that were killed (``name``'s, whose lock
    the caller holds, and those of any image no one is building now)."""
    for stale in cache.stale_work("build", name):
        progress.phase(f"removing {stale.name}, left by an interrupted build")
        clear(stale)


def _build_in(
    workdir: Path, name: str, recipe: Build, mirror: str, user: str, cache: Cache, progress: Progress
) -> CachedImage:
    rootfs, raw = workdir / "rootfs", workdir / "disk.raw"
    progress.phase("bootstrapping with mmdebstrap")
    run(mmdebstrap_argv(recipe, rootfs, mirror), what="mmdebstrap", timeout=3600)
    progress.phase("configuring")
    configure_rootfs(rootfs, recipe)
    kernel, initrd = boot_files(rootfs)
    shutil.copy(kernel, workdir / BOOT_FILES["kernel"])
    shutil.copy(initrd, workdir / BOOT_FILES["initrd"])
    build_lean(rootfs, kernel, workdir / BOOT_FILES["lean_initrd"])
    progress.phase("making the filesystem")
    make_disk(rootfs, raw, recipe.disk_gib)
    progress.phase("installing the boot loader")
    install_bootloader(raw, workdir)
    progress.phase("converting to qcow2")
    qcow2 = workdir / "disk.qcow2"
    run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(qcow2)], what="qemu-img convert", timeout=600)
    progress.phase("publishing")
    return _publish(workdir, name, recipe, user, cache)


def _publish(workdir: Path, name: str, recipe: Build, user: str, cache: Cache) -> CachedImage:
    sha256 = file_digest(workdir / "disk.qcow2", "sha256")
    disk = cache.versioned(name, sha256, "qcow2")
    boot = {kind: cache.versioned(name, sha256, suffix) for kind, suffix in BOOT_FILES.items()}
    # new files are removed again unless the record is published (an identical
    # earlier build's are left: its record points at them)
    made = [p for p in (*boot.values(), disk) if not p.exists()]
    try:
        for kind, suffix in BOOT_FILES.items():
            (workdir / suffix).replace(boot[kind])
        (workdir / "disk.qcow2").replace(disk)
        record = new_record(
            name, disk, sha256, "build", recipe=recipe_digest(recipe),
            kernel_cmdline=recipe.kernel_cmdline, user=user, fast_boot=FAST_BOOT,
            **{kind: str(p) for kind, p in boot.items()},
        )
        published = cache.publish(record)
        made.clear()
        return published
    finally:
        for path in made:
            path.unlink(missing_ok=True)
