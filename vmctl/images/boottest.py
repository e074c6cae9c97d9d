"""``vmctl image test``: boot a cached image once and watch it reach a login prompt.

The guest is a transient libvirt domain on a throw-away overlay, with no
network and no seed: it proves the image, the accelerator and the hypervisor
work together. Everything it created is removed, whatever happens.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .._core.progress import NoProgress, Progress
from ..errors import ImageError, WaitTimeout
from ..hypervisor.console import BootWatch, read, tail
from ..hypervisor.disks import create_overlay
from ..hypervisor.driver import Hypervisor
from ..hypervisor.xml import domain_xml
from ..model.spec import BootMode, DiskBoot, DomainSpec, KernelBoot
from .catalog import CachedImage


@dataclass(frozen=True)
class BootReport:
    image: str
    boot: str
    accel: str
    milestones: dict[str, float]
    console_tail: list[str]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def boot_spec(image: CachedImage, boot: BootMode) -> DiskBoot | KernelBoot:
    if boot == "disk":
        return DiskBoot()
    if not (image.kernel and image.initrd and image.kernel_cmdline):
        raise ImageError(
            f"image {image.name!r} has no extracted kernel, so it cannot boot with --boot kernel",
            hint=f"build it locally ('vmctl image build {image.name}') or use --boot disk",
        )
    return KernelBoot(Path(image.kernel), Path(image.initrd), image.kernel_cmdline)


def boot_test(
    hv: Hypervisor,
    image: CachedImage,
    workdir: Path,
    accel: str,
    boot: BootMode = "disk",
    timeout: float = 300,
    progress: Progress = NoProgress(),
) -> BootReport:
    """Boot ``image`` once under ``hv``; raise :class:`WaitTimeout` if no login prompt appears."""
    name = f"vmctl-test-{secrets.token_hex(3)}"
    spec = DomainSpec(
        name=name,
        disk=workdir / f"{name}.qcow2",
        serial_log=workdir / f"{name}.serial.log",
        accel="kvm" if accel == "kvm" else "tcg",
        boot=boot_spec(image, boot),
        network=None,
        memory_mib=1024,
    )
    progress.phase("creating overlay")
    create_overlay(Path(image.path), spec.disk)
    try:
        progress.phase("booting (waiting for a login prompt on the serial console)")
        hv.create_transient(domain_xml(spec))
        watch = BootWatch(spec.serial_log, started=time.monotonic())
        try:
            seen = watch.wait_for("login", timeout)
        except WaitTimeout as e:
            e.hint = f"console tail: {' | '.join(tail(read(spec.serial_log), 3))}"
            raise
        return BootReport(image.name, boot, spec.accel, seen, tail(read(spec.serial_log), 5))
    finally:
        progress.phase("cleaning up")
        if hv.exists(name):
            hv.power_off(name)
        spec.disk.unlink(missing_ok=True)
        spec.serial_log.unlink(missing_ok=True)
