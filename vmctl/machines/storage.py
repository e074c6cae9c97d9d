"""A VM's disks through libvirt's storage API, so the client and the hypervisor need
not share a file system.

Every hypervisor vmctl uses has two directory pools: ``vmctl-images`` holds base
images and their boot files (uploaded from the client's image cache when the host
lacks them, and verified by reading them back), ``vmctl`` holds each VM's overlay
(created by libvirt, backed by the base volume) and its NoCloud seed (uploaded).
Paths in a domain's XML are the volumes' paths on the hypervisor.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from pathlib import Path

from .._core.locks import file_lock
from .._core.paths import machines_dir, state_dir
from .._core.progress import NoProgress, Progress
from ..errors import ImageError
from ..hypervisor.accel import find_kernel
from ..hypervisor.driver import Hypervisor, Volume
from ..hypervisor.xml import storage_pool_xml, volume_xml
from ..images.catalog import CachedImage
from ..images.download import file_digest
from ..model.spec import VolumeSpec
from ..model.uri import is_remote

MACHINES_POOL = "vmctl"  # each VM's overlay and seed
IMAGES_POOL = "vmctl-images"  # base images and their kernels and initrds, shared by the VMs
REMOTE_ROOT = "/var/lib/libvirt/images/vmctl"  # the pools' directories on a hypervisor reached over the network
VERIFIED = ".verified"  # an empty volume beside an upload whose bytes were read back and matched


def pool_dirs(uri: str) -> dict[str, str]:
    """Where a host's pools live: the state directory here, a fixed directory elsewhere."""
    if is_remote(uri):
        return {MACHINES_POOL: f"{REMOTE_ROOT}/machines", IMAGES_POOL: f"{REMOTE_ROOT}/images"}
    return {MACHINES_POOL: str(machines_dir()), IMAGES_POOL: str(state_dir() / "images")}


def prepare_pools(hv: Hypervisor) -> None:
    """Define, build and start both pools (a pool that exists keeps its own directory)."""
    for name, path in pool_dirs(hv.uri).items():
        hv.ensure_storage_pool(name, storage_pool_xml(name, path))


@dataclass(frozen=True)
class Storage:
    """The storage of one hypervisor, as vmctl uses it."""

    hv: Hypervisor
    progress: Progress = NoProgress()

    def image(self, image: CachedImage) -> tuple[CachedImage, Volume]:
        """``image`` with its files' paths those of the hypervisor's volumes (uploaded first
        where it lacks them), and the base disk's volume."""
        prepare_pools(self.hv)  # a host vmctl has not prepared (remote, or a runtime started by an older vmctl)
        disk = self._ensure(Path(image.path), image.sha256)
        kernel, initrd, lean = (self._ensure(Path(p)).path if p else None
                                for p in (image.kernel, image.initrd, image.lean_initrd))
        return replace(image, path=disk.path, kernel=kernel, initrd=initrd, lean_initrd=lean), disk

    def probe_kernel(self) -> str:
        """The accelerator probe's kernel (:func:`~vmctl.hypervisor.accel.find_kernel`) on the
        hypervisor: its path there, uploaded and verified first where it lacks it."""
        prepare_pools(self.hv)
        return self._ensure(find_kernel()).path

    def overlay(self, name: str, base: Volume, size_gib: int | None) -> str:
        """A new qcow2 overlay ``NAME.qcow2`` on ``base`` (mode 0600), at least as large as it."""
        capacity = max(base.capacity, (size_gib or 0) << 30)
        volume = f"{name}.qcow2"
        self.hv.delete_volume(MACHINES_POOL, volume)  # what an interrupted up left
        return self.hv.create_volume(MACHINES_POOL, volume_xml(VolumeSpec(volume, capacity, backing=base.path)))

    def seed(self, name: str, data: bytes) -> str:
        """The NoCloud seed ``NAME.seed.iso`` (mode 0600: it holds the guest's host key)."""
        volume = f"{name}.seed.iso"
        self.hv.delete_volume(MACHINES_POOL, volume)
        path = self.hv.create_volume(MACHINES_POOL, volume_xml(VolumeSpec(volume, len(data), "raw")))
        self.hv.upload_volume(MACHINES_POOL, volume, io.BytesIO(data), len(data))
        return path

    def machine_file(self, name: str, suffix: str) -> str:
        """Where the hypervisor keeps VM ``name``'s file ``NAME.SUFFIX`` (its serial log:
        libvirt writes it there, beside the VM's volumes)."""
        directory = self.hv.storage_pool_path(MACHINES_POOL) or pool_dirs(self.hv.uri)[MACHINES_POOL]
        return f"{directory}/{name}.{suffix}"

    def remove(self, name: str) -> list[str]:
        """Delete VM ``name``'s volumes (and its serial log: a file of the pool); the paths
        of those there were."""
        names = (f"{name}.qcow2", f"{name}.seed.iso", f"{name}.serial.log")
        return [path for v in names if (path := self.hv.delete_volume(MACHINES_POOL, v))]

    def remove_uploads(self, names: list[str]) -> list[str]:
        """Delete the uploaded image files called ``names`` (and their marks); their paths."""
        removed = []
        for name in names:
            self.hv.delete_volume(IMAGES_POOL, name + VERIFIED)  # the mark first: never one without its file
            if path := self.hv.delete_volume(IMAGES_POOL, name):
                removed.append(path)
        return removed

    def _ensure(self, local: Path, sha256: str | None = None) -> Volume:
        """The volume of the image file ``local``, uploaded and verified if the host lacks it."""
        name = local.name
        key = hashlib.sha256(f"{self.hv.uri}\0{name}".encode()).hexdigest()[:16]
        locks = state_dir() / "uploads"
        locks.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(locks / f"{key}.lock", what=f"another upload of {name}", progress=self.progress):
            volume = self.hv.volume(IMAGES_POOL, name)
            if volume is not None and self.hv.volume(IMAGES_POOL, name + VERIFIED) is not None:
                return volume
            if volume is not None:
                self.hv.delete_volume(IMAGES_POOL, name)  # an upload that was interrupted
            return self._upload(local, sha256)

    def _upload(self, local: Path, sha256: str | None) -> Volume:
        name, size = local.name, local.stat().st_size
        self.progress.phase(f"uploading {name} to the hypervisor ({size >> 20} MiB)")
        self.hv.create_volume(IMAGES_POOL, volume_xml(VolumeSpec(name, size, "raw", 0o644)))
        try:
            with local.open("rb") as f:
                self.hv.upload_volume(IMAGES_POOL, name, f, size, lambda n: self.progress.advance(n, size))
            self.progress.phase(f"verifying {name} on the hypervisor")
            want = sha256 if sha256 and len(sha256) == 64 else file_digest(local, "sha256")
            if (got := self.hv.volume_sha256(IMAGES_POOL, name)) != want:
                raise ImageError(f"{name} on {self.hv.uri} does not match the cache after its upload "
                                 f"(sha256 {got[:12]}, expected {want[:12]})",
                                 hint="check the hypervisor's disk; the next 'vmctl up' uploads it again")
            self.hv.create_volume(IMAGES_POOL, volume_xml(VolumeSpec(name + VERIFIED, 0, "raw", 0o644)))
        except BaseException:
            self.hv.delete_volume(IMAGES_POOL, name)
            raise
        volume = self.hv.volume(IMAGES_POOL, name)  # refreshed: a qcow2's virtual size
        assert volume is not None
        return volume
