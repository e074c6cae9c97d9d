"""``vmctl image bake``: what a killed bake left (its disk in the cache, the temporary
VM of --from-image with the seed holding its private host key) goes at the next bake,
and the temporary VM's name is always a valid one."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmctl._core.proc import CommandResult
from vmctl.errors import ConfigError, ImageError
from vmctl.hypervisor.disks import backing_file, create_overlay
from vmctl.images.catalog import Cache, new_record
from vmctl.machines.bake import bake, bake_from_image, temp_vm_name
from vmctl.model.spec import MachineSpec, check_name

from .test_images_leftovers import Phases


@pytest.mark.parametrize("new", ["docker-12", "x" * 57 + "-yy", "a" * 58 + "-b", "x" * 63, "y" * 56 + "-" * 6 + "z"])
def test_the_temporary_vm_name_is_a_valid_one(new: str) -> None:
    name = temp_vm_name(check_name(new))
    assert check_name(name) == name and name.startswith("bake-") and not name.endswith("-")
    assert len(name) <= 63


def test_long_names_get_temporary_vms_of_their_own() -> None:
    assert temp_vm_name("docker-12") == "bake-docker-12"
    assert temp_vm_name("x" * 62 + "a") != temp_vm_name("x" * 62 + "b")


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    cache = Cache(tmp_path)
    disk = cache.versioned("base", "a" * 64, "qcow2")
    disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    cache.publish(new_record("base", disk, "a" * 64, "build"))
    return cache


@dataclass
class FakeMachine:
    """A VM on an overlay of the base image: its guest commands all succeed."""

    name: str
    disk: Path
    image: str = "base"
    user: str = "debian"
    rc: int = 0  # of every guest command
    downed: bool = False
    host: Any = field(default_factory=lambda: SimpleNamespace(uri="qemu:///system"))  # (only its uri is read)
    state: str = "running"
    started: int = 0
    ran: list[str] = field(default_factory=list)

    def start(self, forward: bool = True) -> float:
        self.state, self.started = "running", self.started + 1
        return 0.0

    @property
    def spec(self) -> MachineSpec:
        return MachineSpec(self.name, image=self.image)

    @property
    def record(self) -> Any:
        return type("Record", (), {"disk": str(self.disk)})()

    def run(self, command: str, stdin: bytes = b"", timeout: float = 60) -> CommandResult:
        self.ran.append(command)
        return CommandResult(command, self.rc, "", "" if self.rc == 0 else "cloud-init: not found")

    def stop(self, timeout: float = 120) -> None:
        pass

    def down(self) -> list[str]:
        self.downed = True
        self.disk.unlink()
        return []


def vm(cache: Cache, tmp_path: Path, name: str = "web", rc: int = 0) -> FakeMachine:
    base = cache.require("base")
    return FakeMachine(name, create_overlay(Path(base.path), tmp_path / "machines" / f"{name}.qcow2"), rc=rc)


def test_the_next_bake_removes_the_disks_killed_bakes_left(cache: Cache, tmp_path: Path) -> None:
    left = [cache.root / ".bake-new-4242.qcow2", cache.root / ".bake-gone-17.qcow2"]
    for path in left:
        path.write_bytes(b"half a disk")
    progress = Phases()
    image = bake(vm(cache, tmp_path), "new", cache, progress)  # type: ignore[arg-type]
    assert not any(path.exists() for path in left)
    assert {f"removing {p.name}, left by an interrupted bake" for p in left} <= set(progress.phases)
    assert backing_file(Path(image.path)) is None  # standalone: removing base does not break it
    assert not list(cache.root.glob(".bake-*"))


def test_a_bake_killed_after_shutting_the_vm_down_starts_it_again(cache: Cache, tmp_path: Path) -> None:
    """The next bake generalises again: the guest must be running for that."""
    machine = vm(cache, tmp_path)
    machine.state = "shutoff"
    bake(machine, "new", cache)  # type: ignore[arg-type]
    assert machine.started == 1 and machine.ran  # started, then generalised


class FakeHypervisor:
    def __init__(self, domains: set[str]) -> None:
        self.domains = domains

    def exists(self, name: str) -> bool:
        return name in self.domains


class FakeHost:
    def __init__(self, cache: Cache, tmp_path: Path, domains: set[str], rc: int = 0) -> None:
        self.cache, self.tmp_path, self.rc = cache, tmp_path, rc
        self.uri = "qemu:///system"
        self.hv = FakeHypervisor(domains)
        self.deleted: list[str] = []
        self.made: list[FakeMachine] = []

    def delete(self, name: str) -> list[str]:
        self.deleted.append(name)
        self.hv.domains.discard(name)
        return []

    def up(self, spec: MachineSpec, progress: Any = None, forward: bool = True) -> FakeMachine:
        assert spec.name not in self.hv.domains, "up would reuse the leftover VM"
        self.hv.domains.add(spec.name)
        self.made.append(vm(self.cache, self.tmp_path, spec.name, self.rc))
        return self.made[-1]


def test_a_vm_on_the_hypervisors_copy_of_the_cached_version_bakes(cache: Cache, tmp_path: Path) -> None:
    """VMs are made on the copy ``up`` uploaded into the host's images pool: same file name."""
    copy = tmp_path / "pool-images" / Path(cache.require("base").path).name
    copy.parent.mkdir()
    copy.write_bytes(Path(cache.require("base").path).read_bytes())
    machine = FakeMachine("web", create_overlay(copy, tmp_path / "machines" / "web.qcow2"))
    image = bake(machine, "new", cache, Phases())  # type: ignore[arg-type]
    assert image.name == "new" and backing_file(Path(image.path)) is None


def test_a_vm_of_an_earlier_build_is_refused(cache: Cache, tmp_path: Path) -> None:
    older = tmp_path / "base.000000000000.qcow2"
    older.write_bytes(Path(cache.require("base").path).read_bytes())
    machine = FakeMachine("web", create_overlay(older, tmp_path / "machines" / "web.qcow2"))
    with pytest.raises(ImageError, match="made from an earlier build of base"):
        bake(machine, "new", cache, Phases())  # type: ignore[arg-type]


def test_the_next_bake_deletes_the_temporary_vm_a_killed_one_left(cache: Cache, tmp_path: Path) -> None:
    host = FakeHost(cache, tmp_path, {"bake-new"})
    (cache.root / ".bake-new.vm").write_text("bake-new\n")  # the killed bake had made it
    progress = Phases()
    image = bake_from_image(host, "new", "base", cache=cache, progress=progress)  # type: ignore[arg-type]
    assert host.deleted == ["bake-new"] and "deleting bake-new, left by an interrupted bake" in progress.phases
    assert host.made[0].downed and cache.require("new").path == image.path
    assert not (cache.root / ".bake-new.vm").exists()


def test_a_vm_of_that_name_that_no_bake_made_is_not_deleted(cache: Cache, tmp_path: Path) -> None:
    host = FakeHost(cache, tmp_path, {"bake-new"})
    with pytest.raises(ConfigError, match="a VM named bake-new exists") as e:
        bake_from_image(host, "new", "base", cache=cache)  # type: ignore[arg-type]
    assert "vmctl down bake-new" in e.value.hint
    assert host.deleted == [] and host.made == []


def test_an_existing_image_is_refused_before_a_vm_is_made(cache: Cache, tmp_path: Path) -> None:
    host = FakeHost(cache, tmp_path, set())
    with pytest.raises(ImageError, match="image 'base' already exists"):
        bake_from_image(host, "base", "base", cache=cache)  # type: ignore[arg-type]
    assert host.made == []


def test_a_failed_bake_deletes_its_temporary_vm(cache: Cache, tmp_path: Path) -> None:
    host = FakeHost(cache, tmp_path, set(), rc=1)
    with pytest.raises(ImageError, match="generalising bake-new failed"):
        bake_from_image(host, "new", "base", cache=cache)  # type: ignore[arg-type]
    assert host.made[0].downed and not (cache.root / ".bake-new.vm").exists()
    assert cache.get("new") is None
