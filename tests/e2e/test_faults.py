"""Fault injection: vmctl killed (SIGKILL) in the middle of its work, and the
same command again converging. The Docker host shared by the Docker tests is
itself made this way (conftest.DOCK_KILLS); here is what each kill left."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import DOCK, DOCK_KILLS, IMAGE, killed_at, vmctl, vmctl_json

BUILD = "e2e-build"  # a copy of IMAGE's definition under another name: a build that really runs
IMAGES = Path(__file__).resolve().parents[2] / "images"

# What a VM still lacks after up was killed in each phase (define may be done or not: see below).
MISSING_AFTER = {
    "waiting for an address": {"ip", "ssh", "cloud_init", "docker"},
    "waiting for SSH": {"ssh", "cloud_init", "docker"},
    "waiting for the guest to be ready": {"cloud_init", "docker"},
    "installing Docker": {"docker"},
}


def test_each_kill_leaves_a_vm_that_says_what_it_lacks(dockerhost: dict[str, Any]) -> None:
    seen = dockerhost["interrupted"]
    assert [s["killed_in"] for s in seen] == [label for label, _ in DOCK_KILLS]
    first = seen[0]["listed"]  # killed while defining: no domain yet, or one with nothing but define done
    assert first is None or (first["complete"] is False and "start" in first["missing_phases"]), first
    for step in seen[1:]:
        row = step["listed"]
        assert row is not None and row["complete"] is False, step
        assert set(row["missing_phases"]) == MISSING_AFTER[step["killed_in"]], step


def test_the_next_up_resumes_where_the_last_one_was_killed(dockerhost: dict[str, Any]) -> None:
    seen = dockerhost["interrupted"]
    second = seen[1]["printed"]  # after the kill while defining: leftovers removed, or the domain resumed
    assert "resuming e2e-dock: start" in second or "removing what an interrupted up of e2e-dock left" in second \
        or seen[0]["listed"] is None, second
    for step in seen[2:]:
        assert f"resuming {DOCK}:" in step["printed"], step
    assert f"resuming {DOCK}: docker left to do" in dockerhost["resumed"]


def test_the_resumed_vm_is_complete_and_works(dockerhost: dict[str, Any]) -> None:
    assert dockerhost["complete"] is True and dockerhost["missing_phases"] == []
    assert dockerhost["state"] == "running" and dockerhost["timings"]["docker"] > 0


def test_a_bake_killed_while_flattening_is_cleaned_up_by_the_next(baked_image: dict[str, Any]) -> None:
    assert "left by an interrupted bake" in baked_image["rebaked"], baked_image["rebaked"]
    cache = Path(baked_image["path"]).parent
    assert not list(cache.glob(".bake-*")), list(cache.glob(".bake-*"))  # no half-made disk stays


def test_an_image_build_killed_midway_is_cleaned_up_and_finished_by_the_next(
    runtime: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while mmdebstrap runs (as root, with mounts and possibly a loop device):
    the next build of the image removes what the killed one left, then builds it."""
    definition = (IMAGES / f"{IMAGE}.yaml").read_text().replace(f"name: {IMAGE}", f"name: {BUILD}")
    (tmp_path / f"{BUILD}.yaml").write_text(definition)
    monkeypatch.setenv("VMCTL_IMAGE_PATH", str(tmp_path))
    try:
        killed_at(["image", "build", BUILD], "bootstrapping with mmdebstrap", 15.0)
        again = vmctl("image", "build", BUILD)
        assert "left by an interrupted build" in again.stderr, again.stderr
        assert BUILD in [row["name"] for row in vmctl_json("image", "ls")]
        cache = Path(next(row["path"] for row in vmctl_json("image", "ls") if row["name"] == BUILD)).parent
        assert not list(cache.glob(f".build-{BUILD}*"))
        assert ".build-" not in Path("/proc/self/mountinfo").read_text()
        assert ".build-" not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    finally:
        vmctl("image", "rm", "--force", BUILD, check=False)
