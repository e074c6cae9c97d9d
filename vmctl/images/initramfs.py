"""The fast profile's lean initramfs: busybox, a few modules and one script.

Debian's initramfs (initramfs-tools, 16 MB) starts udev, coldplugs every
device and probes for the root filesystem: 4-5 s of an emulated boot before
the real root is mounted. A vmctl VM has one known disk controller, so the
lean one loads the virtio modules the root disk, the seed and the network
need, mounts the root and switches to it: well under a second.

It is an uncompressed ``newc`` cpio archive (under TCG, decompressing costs
more than copying), written here in Python so the build needs no ``cpio``.
The archive format and the module order are pure functions; :func:`build_lean`
reads the built tree.
"""

from __future__ import annotations

import gzip
import lzma
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._core.render import render
from ..errors import ImageError

# What a vmctl VM needs before its root filesystem is mounted, and just after:
# the root disk and the NoCloud seed are virtio disks, the root filesystem is
# ext4 (the image build's), the seed is ISO 9660 (loaded here so the fast-boot
# unit's mount needs no modprobe), and the NIC is virtio (its eth0 exists
# before udev starts, for systemd-networkd). Those the kernel has built in
# (ext4 in Debian's cloud kernel) are left out.
MODULES = ("virtio_pci", "virtio_blk", "ext4", "virtio_net", "isofs")
BUSYBOX = "bin/busybox"  # busybox-static, in the image's package list


@dataclass(frozen=True)
class Entry:
    """One member of the archive: a directory, a file, or a character device."""

    path: str  # without a leading slash
    mode: int  # including the file type bits
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def directory(path: str) -> Entry:
    return Entry(path, stat.S_IFDIR | 0o755)


def regular(path: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | perm, data)


def chardev(path: str, major: int, minor: int) -> Entry:
    return Entry(path, stat.S_IFCHR | 0o600, rdev=(major, minor))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.path.encode() + b"\0"
    fields = (
        ino, entry.mode, 0, 0, 1, 0, len(entry.data),  # ino mode uid gid nlink mtime filesize
        0, 0, entry.rdev[0], entry.rdev[1], len(name), 0,  # devmajor devminor rdevmajor rdevminor namesize check
    )
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    head = header + name
    return head + _pad(len(head)) + entry.data + _pad(len(entry.data))


def cpio_newc(entries: list[Entry]) -> bytes:
    """A ``newc`` (SVR4, no checksum) archive of ``entries``, as the kernel unpacks it."""
    paths = [e.path for e in entries]
    if len(set(paths)) != len(paths):
        raise ValueError("duplicate paths in the archive")
    body = b"".join(_member(i + 1, e) for i, e in enumerate(entries))
    return body + _member(0, Entry("TRAILER!!!", 0))


def _module_name(path: str) -> str:
    return Path(path).name.split(".ko")[0].replace("-", "_")


def module_order(modules_dep: str, wanted: tuple[str, ...], builtin: str = "") -> list[str]:
    """The module files (paths relative to the modules directory) to load for ``wanted``,
    each after the modules it depends on, each once. ``modules_dep`` and ``builtin``
    are depmod's ``modules.dep`` and ``modules.builtin``: a wanted module built
    into the kernel needs no loading; one in neither file is an error."""
    built_in = {_module_name(line) for line in builtin.split()}
    deps: dict[str, list[str]] = {}
    for line in modules_dep.splitlines():
        if ":" in line:
            module, _, needs = line.partition(":")
            deps[module.strip()] = needs.split()
    by_name = {_module_name(m): m for m in deps}
    order: list[str] = []

    def visit(module: str) -> None:
        if module in order:
            return
        # modules.dep lists every dependency, transitively, nearest first; load the far ones first
        for dep in reversed(deps.get(module, [])):
            visit(dep)
        order.append(module)

    for name in wanted:
        if name in built_in:
            continue
        if name not in by_name:
            raise ImageError(f"the image's kernel has no module {name!r}, built in or loadable",
                             hint="the lean initramfs needs a kernel with virtio, ext4 and ISO 9660 support")
        visit(by_name[name])
    return order


def kernel_release(kernel: Path) -> str:
    """``6.1.0-50-cloud-amd64`` from ``vmlinuz-6.1.0-50-cloud-amd64``."""
    prefix = "vmlinuz-"
    if not kernel.name.startswith(prefix):
        raise ImageError(f"cannot tell the kernel release from {kernel.name!r}",
                         hint="the built tree's /vmlinuz should point at boot/vmlinuz-RELEASE, as Debian's kernels do")
    return kernel.name[len(prefix):]


def lean_entries(rootfs: Path, release: str) -> list[Entry]:
    """The archive's members, read from the built tree ``rootfs``."""
    moddir = rootfs / "lib/modules" / release
    busybox = rootfs / BUSYBOX
    if not busybox.is_file():
        raise ImageError("the built tree has no /bin/busybox", hint="add busybox-static to the build's packages")
    try:
        order = module_order((moddir / "modules.dep").read_text(), MODULES,
                             (moddir / "modules.builtin").read_text())
    except OSError as e:
        raise ImageError(f"cannot read the kernel's module lists in {moddir}: {e.strerror}",
                         hint="the build's kernel package should have run depmod") from e
    modules = [(Path(m).name.split(".ko")[0] + ".ko", _uncompressed(moddir / m)) for m in order]
    names = [name for name, _ in modules]
    return [
        directory("bin"), directory("dev"), directory("proc"), directory("sys"), directory("root"),
        directory("modules"), chardev("dev/console", 5, 1),
        regular(BUSYBOX, busybox.read_bytes(), 0o755),
        regular("init", render("image/lean-init.sh.j2").encode(), 0o755),
        regular("modules/order", "".join(n + "\n" for n in names).encode()),
        *(regular(f"modules/{name}", data) for name, data in modules),
    ]


# busybox's insmod takes a module as it is; Debian compresses them from 13 on (xz)
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {".ko": bytes, ".ko.xz": lzma.decompress, ".ko.gz": gzip.decompress}


def _uncompressed(module: Path) -> bytes:
    suffix = module.name[module.name.index(".ko"):]
    if suffix not in _DECOMPRESS:
        raise ImageError(f"cannot unpack kernel module {module.name} for the lean initramfs",
                         hint="modules compressed with xz or gzip (or not at all) are supported")
    return _DECOMPRESS[suffix](module.read_bytes())


def build_lean(rootfs: Path, kernel: Path, out: Path) -> Path:
    """Write the lean initramfs for ``kernel`` (a file in ``rootfs/boot``) to ``out``."""
    out.write_bytes(cpio_newc(lean_entries(rootfs, kernel_release(kernel))))
    return out
