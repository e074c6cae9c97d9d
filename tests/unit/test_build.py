from __future__ import annotations

import struct
from pathlib import Path

import pytest

from vmctl.errors import ImageError
from vmctl.images.build import PART_START, configure_rootfs, mbr, mmdebstrap_argv
from vmctl.images.catalog import Build

RECIPE = Build(
    suite="bookworm", mirror="http://mirror.invalid/debian", packages=("curl", "sudo"),
    kernel_cmdline="root=LABEL=vmctl-root ro console=ttyS0",
)


def test_mbr_has_one_active_linux_partition_from_1mib_to_the_end() -> None:
    size = 3 << 30
    sector = mbr(size, b"\xeb" * 440)
    assert len(sector) == 512 and sector[510:] == b"\x55\xaa"
    assert sector[:440] == b"\xeb" * 440
    status, ptype = sector[446], sector[450]
    start, count = struct.unpack("<II", sector[454:462])
    assert (status, ptype, start) == (0x80, 0x83, PART_START)
    assert start + count == size // 512
    assert sector[462:510] == bytes(48)


def test_mbr_refuses_oversized_boot_code() -> None:
    with pytest.raises(ImageError, match="441 bytes"):
        mbr(1 << 30, b"x" * 441)


def test_mmdebstrap_argv_includes_every_package_and_honours_a_mirror_override() -> None:
    argv = mmdebstrap_argv(RECIPE, Path("/r"), "http://other/debian")
    assert "--include=curl,sudo" in argv
    assert argv[-3:] == ["bookworm", "/r", "http://other/debian"]


def test_configure_rootfs_strips_identity(tmp_path: Path) -> None:
    root = tmp_path
    for d in ("etc/ssh", "etc/cloud/cloud.cfg.d", "var/lib/dbus", "var/lib/apt/lists", "var/cache/apt/archives", "usr"):
        (root / d).mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("secret")
    (root / "etc/machine-id").write_text("1234\n")
    (root / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    (root / "var/cache/apt/archives/x.deb").write_text("")
    configure_rootfs(root, RECIPE)
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "etc/resolv.conf").exists()
    assert not (root / "var/cache/apt/archives/x.deb").exists()
    assert "LABEL=vmctl-root" in (root / "etc/fstab").read_text()
    assert "APPEND root=LABEL=vmctl-root ro console=ttyS0" in (root / "boot/extlinux/extlinux.conf").read_text()
    assert "datasource_list: [NoCloud, None]" in (root / "etc/cloud/cloud.cfg.d/90-vmctl.cfg").read_text()
    masked = root / "etc/systemd/system-generators/systemd-gpt-auto-generator"
    assert masked.is_symlink() and str(masked.readlink()) == "/dev/null"
    assert not (root / "etc/systemd/system-generators/systemd-fstab-generator").exists()
    usr = (root / "usr").stat().st_mtime_ns
    for stamp in (root / "etc/.updated", root / "var/.updated"):  # systemd: /usr is not newer, nothing to update
        assert stamp.stat().st_mtime_ns == usr and f"TIMESTAMP_NSEC={usr}" in stamp.read_text()


def test_the_image_carries_the_fast_profile_units_inert(tmp_path: Path) -> None:
    import subprocess

    root = tmp_path
    for d in ("etc/ssh", "etc/cloud/cloud.cfg.d", "var/lib/dbus", "var/lib/apt/lists", "var/cache/apt/archives", "usr"):
        (root / d).mkdir(parents=True)
    configure_rootfs(root, RECIPE)
    for name in ("fast-boot", "grow-root"):
        script = root / "usr/lib/vmctl" / name
        assert script.stat().st_mode & 0o111
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0  # it parses
    early = (root / "etc/systemd/system/vmctl-fast-boot.service").read_text()
    assert "Before=ssh.service" in early and "DefaultDependencies=no" in early
    assert "DHCP=ipv4" in (root / "etc/systemd/network/10-vmctl-fast-eth0.network").read_text()
    assert "[Install]" not in early  # never enabled: only the fast profile's kernel arguments want it
    order = (root / "etc/systemd/system/vmctl-ssh-first.target").read_text()
    assert "After=ssh.service" in order and "Before=containerd.service docker.service" in order
    late = (root / "etc/systemd/system/vmctl-cloud-init.service").read_text()
    assert "After=ssh.service" in late and "cloud-init init --local" in late
    ready = (root / "etc/systemd/system/vmctl-ready.target").read_text()
    assert "Requires=vmctl-fast-boot.service vmctl-grow-root.service" in ready
    assert "After=vmctl-cloud-init.service vmctl-cloud-config.service vmctl-cloud-final.service" in ready
    for stage, mode in (("config", "config"), ("final", "final")):
        unit = (root / f"etc/systemd/system/vmctl-cloud-{stage}.service").read_text()
        assert f"cloud-init modules --mode={mode}" in unit and "Requires=vmctl-cloud-init.service" in unit
        assert "[Install]" not in unit  # only the kernel command line wants it
    assert "DefaultDependencies=no" in ready  # else default.target -> it -> cloud-final -> multi-user: a cycle
    grow = (root / "etc/systemd/system/vmctl-grow-root.service").read_text()
    assert "Before=ssh.service" not in grow and "After=vmctl-fast-boot.service" in grow  # beside sshd


def test_the_recipe_digest_follows_the_templates_the_build_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmctl.images.catalog as images

    (tmp_path / "image").mkdir()
    (tmp_path / "image/a.j2").write_text("one")
    monkeypatch.setattr(images, "data_dir", lambda name: tmp_path)
    before = images.recipe_digest(RECIPE)
    (tmp_path / "image/a.j2").write_text("two")
    assert images.recipe_digest(RECIPE) != before


def test_the_recipe_digest_follows_the_build_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vmctl.images.catalog as images

    (tmp_path / "build.py").write_text("v1")
    monkeypatch.setattr(images, "BUILD_CODE", (tmp_path / "build.py",))
    before = images.recipe_digest(RECIPE)
    (tmp_path / "build.py").write_text("v2")
    assert images.recipe_digest(RECIPE) != before


def test_a_baked_image_is_stale_once_its_parent_changes(tmp_path: Path) -> None:
    from vmctl.images.catalog import Cache, new_record

    cache = Cache(tmp_path)
    cache.root.mkdir()

    def publish(name: str, sha: str, source: str, **extra: object) -> None:
        disk = cache.versioned(name, sha, "qcow2")
        disk.write_bytes(b"qcow2")
        cache.publish(new_record(name, disk, sha, source, **extra))

    publish("base", "a" * 64, "build")
    publish("base-docker", "b" * 64, "bake", extra={"parent": "base", "parent_sha256": "a" * 64})
    baked = cache.require("base-docker")
    assert cache.stale(baked) is None and cache.stale(cache.require("base")) is None
    publish("base", "c" * 64, "build")  # rebuilt
    assert cache.stale(baked) == "its parent base changed since it was baked"
    publish("old-docker", "d" * 64, "bake", extra={"parent": "base"})  # baked before parent_sha256
    assert cache.stale(cache.require("old-docker")) == "baked before vmctl recorded its parent's version"
    cache.remove("base")
    assert cache.stale(baked) == "its parent base is no longer cached"
