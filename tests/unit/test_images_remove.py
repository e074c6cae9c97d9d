"""``vmctl image rm`` keeps an image VMs still boot from (unless --force), and every
command that takes an image name refuses one that could reach outside the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import vmctl
import vmctl.api
from vmctl._core.paths import machines_dir
from vmctl.errors import ConfigError, HypervisorError, ImageError
from vmctl.hypervisor.disks import create_overlay
from vmctl.images.catalog import Cache, CachedImage, new_record

UNREACHABLE = "qemu+tcp://127.0.0.1:1/system"  # no hypervisor: the machines directory is what there is


def qcow2(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def publish(cache: Cache, name: str, sha: str) -> CachedImage:
    disk = qcow2(cache.versioned(name, sha, "qcow2"))
    return cache.publish(new_record(name, disk, sha, "build"))


@pytest.fixture
def cache(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Cache:
    monkeypatch.setenv("VMCTL_CONNECT", UNREACHABLE)
    cache = Cache()
    publish(cache, "base", "a" * 64)
    publish(cache, "other", "b" * 64)
    return cache


def vm_on(image: CachedImage, name: str) -> Path:
    return create_overlay(Path(image.path), machines_dir() / f"{name}.qcow2")


def test_an_image_vms_boot_from_is_kept_naming_them(cache: Cache) -> None:
    vm_on(cache.require("base"), "web")
    vm_on(cache.require("base"), "db")
    vm_on(cache.require("other"), "cache")
    with pytest.raises(ImageError) as e:
        vmctl.image_remove("base")
    assert e.value.message == "image 'base' is in use: db, web boot from it"
    assert "--force" in e.value.hint
    assert cache.get("base") is not None and Path(cache.require("base").path).exists()


def test_force_removes_it_anyway(cache: Cache) -> None:
    disk = Path(cache.require("base").path)
    vm_on(cache.require("base"), "web")
    assert vmctl.image_remove("base", force=True) == [disk]
    assert cache.get("base") is None and not disk.exists()


def test_a_vm_on_an_earlier_build_counts_too(cache: Cache) -> None:
    vm_on(cache.require("base"), "old")
    publish(cache, "base", "c" * 64)  # rebuilt: the old version stays for the VM made from it
    with pytest.raises(ImageError, match="old boots from it"):
        vmctl.image_remove("base")


def test_an_image_no_vm_uses_is_removed(cache: Cache) -> None:
    vm_on(cache.require("other"), "web")
    assert [p.name for p in vmctl.image_remove("base")] == [f"base.{'a' * 12}.qcow2"]


@dataclass
class FakeMachine:
    name: str
    spec: Any
    record: Any


class FakeHost:
    machines: list[FakeMachine] = []

    def __init__(self, uri: str | None) -> None:
        self.uri = uri

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def list(self) -> list[FakeMachine]:
        return self.machines


def machine(name: str, image: str, disk: Path) -> FakeMachine:
    @dataclass
    class Spec:
        image: str

    @dataclass
    class Record:
        disk: str

    return FakeMachine(name, Spec(image), Record(str(disk)))


def test_the_hosts_vms_count_by_their_image_and_their_disk(
    cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = create_overlay(Path(cache.require("base").path), tmp_path / "elsewhere/disk.qcow2")
    monkeypatch.setattr(FakeHost, "machines", [
        machine("made-from-it", "base", tmp_path / "gone.qcow2"),
        machine("backed-by-it", "renamed", elsewhere),
        machine("unrelated", "other", tmp_path / "gone.qcow2"),
    ])
    monkeypatch.setattr(vmctl.api, "Host", FakeHost)
    assert vmctl.api.image_users("base") == ["backed-by-it", "made-from-it"]


def test_without_a_hypervisor_the_machines_directory_is_read(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(uri: str | None) -> None:
        raise HypervisorError("cannot connect to libvirt")

    monkeypatch.setattr(vmctl.api, "Host", unreachable)
    vm_on(cache.require("base"), "web")
    assert vmctl.api.image_users("base") == ["web"]


def vmctl_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmctl.cli", *args], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())


def test_the_cli_keeps_an_image_in_use_and_force_removes_it(cache: Cache) -> None:
    vm_on(cache.require("base"), "web")
    done = vmctl_cli("image", "rm", "base")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: image 'base' is in use: web boots from it",
        "hint: delete that VM first ('vmctl down NAME'), or pass --force (they will no longer start)",
    ]
    done = vmctl_cli("image", "rm", "--force", "base")
    assert done.returncode == 0 and done.stdout == "removed base\n"
    assert cache.get("base") is None
    assert "vmctl image rm debian-12-docker --force" in vmctl_cli("image", "rm", "--help").stdout


@pytest.mark.parametrize("args", [
    ("image", "rm", "../../x"), ("image", "rm", "other", "../x"), ("image", "rm", "x\n"),
    ("image", "build", "../x"), ("image", "pull", "../x"), ("image", "test", "a\n"),
    ("image", "bake", "../x", "--from", "web"), ("image", "bake", "new", "--from-image", "../x"),
])
def test_an_image_name_that_is_no_name_is_refused_in_one_line_touching_nothing(
    cache: Cache, args: tuple[str, ...]
) -> None:
    before = sorted(p.name for p in cache.root.iterdir())
    done = vmctl_cli(*args)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: invalid image name") and lines[1].startswith("hint: ")
    assert sorted(p.name for p in cache.root.iterdir()) == before  # "other" too, named before the bad one


@pytest.mark.parametrize("call", [
    lambda: vmctl.image_remove("../x"), lambda: vmctl.image_build("../x"), lambda: vmctl.image_pull("x/y"),
    lambda: vmctl.image_test("a\n"), lambda: Cache().file("../x", "json"), lambda: Cache().require("x\n"),
])
def test_the_api_refuses_them_too(isolated: Path, call: Any) -> None:
    with pytest.raises(ConfigError, match="invalid image name"):
        call()
    assert not (isolated / "cache").exists()


def test_no_image_has_such_a_name(isolated: Path) -> None:
    assert Cache().get("../x") is None
