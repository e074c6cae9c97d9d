"""Disks through libvirt's storage API on the real runtime: base images uploaded into
the hypervisor's ``vmctl-images`` pool and verified by reading them back, overlays and
seeds made as volumes of its ``vmctl`` pool, an interrupted or corrupt upload redone,
and ``image rm`` removing the hypervisor's copies. Only the shared Docker host boots."""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import vmctl as vmctl_api
from vmctl.errors import ImageError
from vmctl.images.catalog import Cache, new_record
from vmctl.machines.storage import IMAGES_POOL, MACHINES_POOL, VERIFIED, Storage

from .conftest import DOCK, IMAGE, vmctl, vmctl_json

TINY = "e2e-tiny"  # a small image of the cache, uploaded and removed without a boot


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny(runtime: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    """A 1 MiB qcow2 published in the image cache as ``e2e-tiny``."""
    disk = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "1M"], check=True)
    cache = Cache()
    target = cache.versioned(TINY, _sha256(disk), "qcow2")
    target.write_bytes(disk.read_bytes())
    image = cache.publish(new_record(TINY, target, _sha256(target), "build"))
    try:
        yield image
    finally:
        vmctl("image", "rm", "--force", TINY, check=False)


def test_a_vms_disk_and_seed_are_volumes_on_the_uploaded_base(dock: dict[str, Any]) -> None:
    cached = next(row for row in vmctl_json("image", "ls") if row["name"] == IMAGE)
    with vmctl_api.connect() as host:
        base = host.hv.volume(IMAGES_POOL, Path(cached["path"]).name)
        assert base is not None and host.hv.volume(IMAGES_POOL, base.name + VERIFIED) is not None
        assert host.hv.volume_sha256(IMAGES_POOL, base.name) == cached["sha256"]  # the cache's bytes
        disk = host.hv.volume(MACHINES_POOL, f"{DOCK}.qcow2")
        seed = host.hv.volume(MACHINES_POOL, f"{DOCK}.seed.iso")
    assert disk is not None and seed is not None
    assert (dock["disk"], dock["seed"]) == (disk.path, seed.path)
    info = subprocess.run(["qemu-img", "info", "-U", "--output=json", disk.path], capture_output=True, text=True)
    assert f'"backing-filename": "{base.path}"' in info.stdout  # the hypervisor's copy, not the cache's file
    assert base.path != cached["path"]


def test_an_interrupted_upload_is_made_again_and_verified(tiny: Any) -> None:
    with vmctl_api.connect() as host:
        storage = Storage(host.hv)
        _, first = storage.image(tiny)
        # what a killed upload leaves: the volume, half-written, and no mark
        host.hv.delete_volume(IMAGES_POOL, first.name + VERIFIED)
        host.hv.upload_volume(IMAGES_POOL, first.name, io.BytesIO(b"\0" * 4096), 4096)
        assert host.hv.volume_sha256(IMAGES_POOL, first.name) != tiny.sha256
        again, volume = storage.image(tiny)
        assert host.hv.volume_sha256(IMAGES_POOL, volume.name) == tiny.sha256
        assert again.path == volume.path == first.path
        assert host.hv.volume(IMAGES_POOL, volume.name + VERIFIED) is not None


def test_an_upload_that_does_not_match_is_removed_with_a_one_line_error(tiny: Any) -> None:
    wrong = replace(tiny, sha256="0" * 64)
    with vmctl_api.connect() as host:
        host.hv.delete_volume(IMAGES_POOL, Path(tiny.path).name + VERIFIED)
        host.hv.delete_volume(IMAGES_POOL, Path(tiny.path).name)
        with pytest.raises(ImageError) as e:
            Storage(host.hv).image(wrong)
        assert "does not match the cache after its upload" in e.value.message and "\n" not in e.value.message
        assert host.hv.volume(IMAGES_POOL, Path(tiny.path).name) is None  # nothing half-made stays


def test_image_rm_removes_the_hypervisors_copies(tiny: Any) -> None:
    with vmctl_api.connect() as host:
        _, volume = Storage(host.hv).image(tiny)
    assert vmctl("image", "rm", TINY).stdout == f"removed {TINY}\n"
    with vmctl_api.connect() as host:
        assert host.hv.volume(IMAGES_POOL, volume.name) is None
        assert host.hv.volume(IMAGES_POOL, volume.name + VERIFIED) is None
