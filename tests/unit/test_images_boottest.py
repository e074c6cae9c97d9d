"""``vmctl image test``: its transient domain has a name of its own, and what a killed
test left (a running domain nothing lists, its files) goes at the next test."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from vmctl.errors import HypervisorError
from vmctl.images.boottest import TEST_NAME, boot_test
from vmctl.images.catalog import CachedImage
from vmctl.model.spec import check_name

from . import test_images_leftovers
from .test_images_leftovers import Phases

hold_lock = test_images_leftovers.hold_lock  # a fixture

LEFT, LIVE = "vmctl-image-test-abc123", "vmctl-image-test-def456"


class FakeHypervisor:
    """Transient domains that "boot" to a login prompt on their serial log."""

    def __init__(self, workdir: Path, fail: bool = False) -> None:
        self.workdir, self.fail = workdir, fail
        self.running: set[str] = set()
        self.metadata_of: dict[str, str] = {}
        self.started: list[str] = []
        self.powered_off: list[str] = []

    def create_transient(self, xml: str) -> str:
        if self.fail:
            raise HypervisorError("starting a transient domain failed: no")
        name = str(ET.fromstring(xml).findtext("name"))
        self.started.append(name)
        self.running.add(name)
        (self.workdir / f"{name}.test.serial.log").write_text("Linux version 6.1\nWelcome to Debian\ndebian login:\n")
        return name

    def exists(self, name: str) -> bool:
        return name in self.running

    def metadata(self, name: str, namespace: str) -> str | None:
        return self.metadata_of.get(name)

    def power_off(self, name: str) -> None:
        self.powered_off.append(name)
        self.running.discard(name)  # transient: gone once off

    def domains(self) -> list[str]:
        return sorted(self.running)


@pytest.fixture
def image(tmp_path: Path) -> CachedImage:
    disk = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    return CachedImage("base", str(disk), 0, "a" * 64, "build", 0.0)


def leave(workdir: Path, hv: FakeHypervisor, name: str) -> None:
    """What a test boot killed with SIGKILL leaves: its domain running, its files, its lock."""
    hv.running.add(name)
    for suffix in ("qcow2", "serial.log", "lock"):
        (workdir / f"{name}.test.{suffix}").write_text("")


def test_the_test_domain_has_a_name_of_its_own(tmp_path: Path, image: CachedImage) -> None:
    hv = FakeHypervisor(tmp_path)
    report = boot_test(hv, image, tmp_path, "tcg")  # type: ignore[arg-type]
    assert report.milestones.keys() == {"kernel", "userspace", "login"}
    [name] = hv.started
    assert TEST_NAME.fullmatch(name) and check_name(name) and name.startswith("vmctl-image-test-")
    assert hv.powered_off == [name] and list(tmp_path.iterdir()) == [Path(image.path)]


def test_what_a_killed_test_left_goes_at_the_next_one(tmp_path: Path, image: CachedImage, hold_lock: Any) -> None:
    workdir = tmp_path / "machines"
    workdir.mkdir()
    hv = FakeHypervisor(workdir)
    leave(workdir, hv, LEFT)
    leave(workdir, hv, LIVE)
    hold_lock(workdir / f"{LIVE}.test.lock")  # a test still running in another process
    hv.running |= {"web", "vmctl-image-test-0000aa"}  # a VM, and a test of another machines directory
    progress = Phases()
    boot_test(hv, image, workdir, "tcg", progress=progress)  # type: ignore[arg-type]
    assert hv.powered_off[0] == LEFT and f"removing {LEFT}, left by an interrupted image test" in progress.phases
    assert not list(workdir.glob(f"{LEFT}*"))
    assert {"web", "vmctl-image-test-0000aa", LIVE} == hv.running
    assert sorted(p.name for p in workdir.iterdir()) == [f"{LIVE}.test.{s}" for s in ("lock", "qcow2", "serial.log")]


def test_a_vm_called_like_a_test_is_left_alone(tmp_path: Path, image: CachedImage) -> None:
    hv = FakeHypervisor(tmp_path)
    leave(tmp_path, hv, LEFT)
    hv.metadata_of[LEFT] = "<machine/>"  # a VM someone called so, made by vmctl up
    vm_files = [tmp_path / f"{LEFT}.{suffix}" for suffix in ("qcow2", "seed.iso", "serial.log", "lock")]
    for path in vm_files:
        path.write_text("the VM's")
    boot_test(hv, image, tmp_path, "tcg")  # type: ignore[arg-type]
    assert LEFT not in hv.powered_off and LEFT in hv.running
    assert all(path.read_text() == "the VM's" for path in vm_files)
    assert not list(tmp_path.glob(f"{LEFT}.test.*"))  # the killed test's files went


def test_a_failed_boot_leaves_nothing(tmp_path: Path, image: CachedImage) -> None:
    hv = FakeHypervisor(tmp_path, fail=True)
    with pytest.raises(HypervisorError):
        boot_test(hv, image, tmp_path, "tcg")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == [Path(image.path)]
