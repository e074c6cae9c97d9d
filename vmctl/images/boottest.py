"""``vmctl image test``: boot a cached image once and watch it reach a login prompt.

The guest is a transient libvirt domain on a throw-away overlay, with no
network and no seed: it proves the image, the accelerator and the hypervisor
work together. Everything it created is removed, whatever happens.

Whatever happens short of SIGKILL: a killed test leaves its domain running
(transient, without vmctl's metadata, so ``vmctl ls`` and ``down`` do not see
it) and its files in the machines directory. Each test is named
``vmctl-image-test-XXXXXX``, its files are ``NAME.test.*`` (no VM has such a
file, whatever it is called), and it holds the lock ``NAME.test.lock`` while it
runs, so the next ``image test`` finds such leftovers (the files of a test whose
lock no one holds), powers their domain off and removes their files.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .._core.locks import file_lock
from .._core.progress import NoProgress, Progress
from ..errors import ImageError, WaitTimeout
from ..hypervisor.console import BootWatch, read, tail
from ..hypervisor.disks import create_overlay
from ..hypervisor.driver import Hypervisor
from ..hypervisor.xml import domain_xml
from ..model.record import METADATA_NS
from ..model.spec import BootMode, DiskBoot, DomainSpec, KernelBoot
from .catalog import CachedImage, shared_read_only
from .leftovers import unowned

PREFIX = "vmctl-image-test-"
TEST_NAME = re.compile(re.escape(PREFIX) + "[0-9a-f]{6}")
TEST_FILE = re.compile(rf"({TEST_NAME.pattern})\.test\..+")
SUFFIXES = ("test.qcow2", "test.serial.log")  # and the lock, test.lock, removed last


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


def files_of(workdir: Path, name: str) -> list[Path]:
    """A test boot's files in ``workdir``: its overlay and serial log."""
    return [workdir / f"{name}.{suffix}" for suffix in SUFFIXES]


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
    clear_stale_tests(hv, workdir, progress)
    name = f"{PREFIX}{secrets.token_hex(3)}"
    disk, serial_log = files_of(workdir, name)
    shared_read_only(image)
    spec = DomainSpec(
        name=name,
        disk=disk,
        serial_log=serial_log,
        base=Path(image.path),
        accel="kvm" if accel == "kvm" else "tcg",
        boot=boot_spec(image, boot),
        network=None,
        memory_mib=1024,
    )
    lock = workdir / f"{name}.test.lock"
    with file_lock(lock):
        try:
            return _boot(hv, image, spec, boot, timeout, progress)
        finally:
            progress.phase("cleaning up")
            _remove(hv, workdir, name)
            lock.unlink(missing_ok=True)  # while held: a waiter sees the file is gone


def _boot(
    hv: Hypervisor, image: CachedImage, spec: DomainSpec, boot: BootMode, timeout: float, progress: Progress
) -> BootReport:
    progress.phase("creating overlay")
    create_overlay(Path(image.path), spec.disk)
    progress.phase("booting (waiting for a login prompt on the serial console)")
    hv.create_transient(domain_xml(spec))
    watch = BootWatch(spec.serial_log, started=time.monotonic())
    try:
        seen = watch.wait_for("login", timeout)
    except WaitTimeout as e:
        e.hint = f"console tail: {' | '.join(tail(read(spec.serial_log), 3))}"
        raise
    return BootReport(image.name, boot, spec.accel, seen, tail(read(spec.serial_log), 5))


def _remove(hv: Hypervisor, workdir: Path, name: str) -> None:
    """Power off test ``name`` (a transient domain: it is gone then) and delete its files."""
    if hv.exists(name) and hv.metadata(name, METADATA_NS) is None:
        hv.power_off(name)
    for path in files_of(workdir, name):
        path.unlink(missing_ok=True)


def tests_in(workdir: Path) -> list[str]:
    """The names of the test boots with files in ``workdir``: its lock, made before its
    domain and removed after it, tells a test of this machines directory from any other."""
    matches = (TEST_FILE.fullmatch(p.name) for p in workdir.glob(f"{PREFIX}*.test.*"))
    return sorted({m[1] for m in matches if m})


def clear_stale_tests(hv: Hypervisor, workdir: Path, progress: Progress) -> None:
    """Power off the domains of killed test boots and delete their files: the tests in
    ``workdir`` whose lock no live process holds."""
    for name in tests_in(workdir):
        lock = workdir / f"{name}.test.lock"
        with unowned(lock) as free:
            if free:
                progress.phase(f"removing {name}, left by an interrupted image test")
                _remove(hv, workdir, name)
                lock.unlink(missing_ok=True)
