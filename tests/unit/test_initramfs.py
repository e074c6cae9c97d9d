from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from vmctl._core.render import render
from vmctl.errors import ImageError
from vmctl.images.catalog import FAST_BOOT, CachedImage
from vmctl.images.initramfs import (
    MODULES,
    chardev,
    cpio_newc,
    directory,
    kernel_release,
    lean_entries,
    module_order,
    regular,
)
from vmctl.machines.lifecycle import boot_for, fast_capable
from vmctl.model.profiles import profile
from vmctl.model.spec import KernelBoot, MachineSpec

# Lines from Debian 12's 6.1 cloud kernel's modules.dep.
MODULES_DEP = """\
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko \
kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko \
kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/cdrom/cdrom.ko:
kernel/fs/isofs/isofs.ko: kernel/drivers/cdrom/cdrom.ko
kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko
"""
MODULES_BUILTIN = "kernel/fs/ext4/ext4.ko\nkernel/fs/jbd2/jbd2.ko\n"


def read_newc(data: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """An independent reader of the format, as the kernel's initramfs unpacker reads it."""
    out, pos = [], 0
    while True:
        assert pos % 4 == 0 and data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        assert data[pos + 110 + namesize - 1] == 0
        start = pos + 110 + namesize
        start += -start % 4
        if name == "TRAILER!!!":
            assert start == len(data)
            return out
        out.append((name, mode, data[start:start + size], (rmaj, rmin)))
        pos = start + size + (-(start + size) % 4)


def test_cpio_newc_round_trips_files_directories_and_devices() -> None:
    archive = cpio_newc([directory("bin"), regular("bin/x", b"12345", 0o755), chardev("dev/console", 5, 1),
                         regular("e", b"")])
    members = read_newc(archive)
    assert [m[0] for m in members] == ["bin", "bin/x", "dev/console", "e"]
    assert stat.S_ISDIR(members[0][1])
    assert members[1][2] == b"12345" and stat.S_IMODE(members[1][1]) == 0o755
    assert stat.S_ISCHR(members[2][1]) and members[2][3] == (5, 1)
    assert members[3][2] == b""
    with pytest.raises(ValueError, match="duplicate"):
        cpio_newc([directory("a"), directory("a")])


def test_module_order_loads_dependencies_first_and_each_once() -> None:
    order = module_order(MODULES_DEP, MODULES, MODULES_BUILTIN)
    names = [Path(m).stem for m in order]
    assert len(names) == len(set(names))
    assert set(names) == {"virtio", "virtio_ring", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
                          "virtio_blk", "failover", "net_failover", "virtio_net", "cdrom", "isofs"}
    for module, needs in [("virtio_pci", "virtio"), ("virtio_blk", "virtio_ring"), ("virtio_net", "failover"),
                          ("net_failover", "failover"), ("isofs", "cdrom")]:
        assert names.index(needs) < names.index(module)
    with pytest.raises(ImageError, match="no module 'virtio_scsi', built in or loadable"):
        module_order(MODULES_DEP, ("virtio_scsi",))
    with pytest.raises(ImageError, match="no module 'ext4'"):  # a kernel without ext4 at all
        module_order(MODULES_DEP, MODULES, "")
    # a kernel with virtio built in loads nothing for it
    assert module_order(MODULES_DEP, ("virtio_blk",), "kernel/drivers/block/virtio_blk.ko\n") == []


def fake_rootfs(root: Path, release: str = "6.1.0-50-cloud-amd64", suffix: str = ".ko") -> Path:
    import gzip
    import lzma

    pack = {".ko": lambda b: b, ".ko.xz": lzma.compress, ".ko.gz": gzip.compress, ".ko.zst": lambda b: b}[suffix]
    moddir = root / "lib/modules" / release
    for line in MODULES_DEP.replace(".ko", suffix).splitlines():
        if ":" in line:
            module = moddir / line.partition(":")[0]
            module.parent.mkdir(parents=True, exist_ok=True)
            module.write_bytes(pack(b"\x7fELF " + module.name.split(".ko")[0].encode() + b".ko"))
    (moddir / "modules.dep").write_text(MODULES_DEP.replace(".ko", suffix))
    (moddir / "modules.builtin").write_text(MODULES_BUILTIN)
    (root / "bin").mkdir(parents=True)
    (root / "bin/busybox").write_bytes(b"\x7fELF busybox")
    return root


@pytest.mark.parametrize("suffix", [".ko", ".ko.xz", ".ko.gz"])
def test_lean_initramfs_has_busybox_init_and_the_modules_in_load_order(tmp_path: Path, suffix: str) -> None:
    rootfs = fake_rootfs(tmp_path, suffix=suffix)
    members = {m[0]: m for m in read_newc(cpio_newc(lean_entries(rootfs, "6.1.0-50-cloud-amd64")))}
    assert members["init"][2].startswith(b"#!/bin/busybox sh\n") and members["init"][1] & 0o111
    assert members["bin/busybox"][2] == b"\x7fELF busybox"
    assert stat.S_ISCHR(members["dev/console"][1])
    order = members["modules/order"][2].decode().split()
    assert order.index("virtio_ring.ko") < order.index("virtio_blk.ko") and order[-1] == "isofs.ko"
    assert all(members[f"modules/{m}"][2] == b"\x7fELF " + m.encode() for m in order)


def test_lean_initramfs_refuses_a_tree_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"cannot unpack kernel module virtio\.ko\.zst") as e:
        lean_entries(fake_rootfs(tmp_path / "zst", suffix=".ko.zst"), "6.1.0-50-cloud-amd64")
    assert "xz or gzip" in (e.value.hint or "")
    root = fake_rootfs(tmp_path / "nobox")
    (root / "bin/busybox").unlink()
    with pytest.raises(ImageError, match="no /bin/busybox") as e:
        lean_entries(root, "6.1.0-50-cloud-amd64")
    assert "busybox-static" in (e.value.hint or "")
    assert kernel_release(Path("/boot/vmlinuz-6.1.0-50-cloud-amd64")) == "6.1.0-50-cloud-amd64"
    with pytest.raises(ImageError, match="kernel release"):
        kernel_release(Path("bzImage"))
    (root / "bin/busybox").write_bytes(b"\x7fELF busybox")
    (root / "lib/modules/6.1.0-50-cloud-amd64/modules.dep").unlink()
    with pytest.raises(ImageError, match="cannot read the kernel's module lists") as e:
        lean_entries(root, "6.1.0-50-cloud-amd64")
    assert "depmod" in (e.value.hint or "")


def test_the_init_script_is_valid_shell() -> None:
    script = render("image/lean-init.sh.j2")
    subprocess.run(["sh", "-n"], input=script.encode(), check=True)
    assert "exec switch_root /root" in script


def image(lean: str | None, fast_boot: int = FAST_BOOT) -> CachedImage:
    return CachedImage(name="old", path="/x.qcow2", size=1, sha256="0" * 64, source="build", created=time.time(),
                       kernel="/k", initrd="/debian-initrd", kernel_cmdline="root=LABEL=r ro", lean_initrd=lean,
                       fast_boot=fast_boot)


def test_the_fast_profile_boots_the_lean_initramfs_and_refuses_an_image_without_one() -> None:
    assert profile("fast").initrd == "lean" and profile("stock").initrd == "image"
    boot = boot_for(image("/lean"), MachineSpec("a", profile="fast"))
    assert isinstance(boot, KernelBoot) and boot.initrd == Path("/lean")
    args = boot.cmdline.split()
    assert args.index("rw") > args.index("ro")  # the last one counts, for the kernel and the lean init
    stock = boot_for(image("/lean"), MachineSpec("a", boot="kernel", profile="stock"))
    assert isinstance(stock, KernelBoot) and stock.initrd == Path("/debian-initrd")
    for old in (image(None), image("/lean", fast_boot=FAST_BOOT - 1)):  # no lean initramfs; older units
        with pytest.raises(ImageError, match="'old' predates the fast profile") as e:
            boot_for(old, MachineSpec("a", profile="fast"))
        assert "vmctl image build old" in (e.value.hint or "")
    # the default: fast where the image can boot it, stock where it cannot (or a disk boot is asked for)
    assert fast_capable(image("/lean")) and not fast_capable(image(None))
    assert not fast_capable(image("/lean", fast_boot=FAST_BOOT - 1))
    assert MachineSpec("a").settled(True).profile == "fast" and MachineSpec("a").settled(False).profile == "stock"
    assert MachineSpec("a", boot="disk").settled(True).profile == "stock"
    assert MachineSpec("a", profile="stock").settled(True).profile == "stock"
