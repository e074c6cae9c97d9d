"""The Python API: what the CLI calls, and what other tools import.

Nothing here prints or exits; failures raise :class:`vmctl.VmctlError`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ._core.locks import file_lock
from ._core.paths import machines_dir, private_machines_dir
from ._core.progress import NoProgress, Progress
from .errors import HypervisorError, ImageError
from .hypervisor.accel import accelerator
from .hypervisor.driver import Hypervisor
from .hypervisor.runtime import Runtime, RuntimeStatus, resolve_uri
from .images import build as _build
from .images import download as _download
from .images.boottest import BootReport, boot_test
from .images.catalog import Cache, CachedImage, backed_by, definition, overlays_on
from .machines import forwarder
from .machines.host import Host, prepare_host
from .machines.storage import Storage
from .model.spec import BootMode, check_name
from .model.uri import require_local


def connect(uri: str | None = None) -> Host:
    """A :class:`~vmctl.host.Host` for ``uri`` (resolved as :func:`resolve_uri` does)."""
    return Host(uri)


def hypervisor_start(progress: Progress = NoProgress()) -> RuntimeStatus:
    """Start vmctl's private runtime (idempotent) with its network and storage."""
    runtime = Runtime()
    private_machines_dir()  # a state directory QEMU cannot use is refused before anything starts
    progress.phase("starting what of the runtime is not running")
    status = runtime.start()
    progress.phase("preparing network and storage")
    with Hypervisor(runtime.uri) as hv:
        prepare_host(hv)
    with Host(runtime.uri) as host:
        autostarted = host.start_autostart(progress)
    return replace(status, autostarted=autostarted)


def hypervisor_stop() -> RuntimeStatus:
    """Stop the private runtime: the VMs' forwarders, its guests, DHCP servers and daemons;
    drop its namespace."""
    runtime = Runtime()
    forwarder.stop_all(machines_dir(), runtime.uri)
    return runtime.stop()


def hypervisor_status() -> RuntimeStatus:
    return Runtime().status()


def image_list() -> list[CachedImage]:
    return Cache().images()


def image_stale(image: CachedImage) -> str | None:
    """Why a baked image no longer matches its parent image, or None."""
    return Cache().stale(image)


def image_build(name: str, progress: Progress = NoProgress()) -> CachedImage:
    """Build ``name`` locally from its recipe (returns the cached one if present)."""
    image = definition(check_name(name, "image name"))
    if image.build is None:
        raise ImageError(f"image {name!r} has no build recipe", hint=f"try 'vmctl image pull {name}'")
    return _build.build(name, image.build, image.user, Cache(), progress)


def image_pull(name: str, progress: Progress = NoProgress()) -> CachedImage:
    """Download and verify ``name`` (returns the cached one if present)."""
    image = definition(check_name(name, "image name"))
    if image.download is None:
        raise ImageError(f"image {name!r} has no download source", hint=f"try 'vmctl image build {name}'")
    return _download.pull(name, image.download, image.user, Cache(), progress)


def image_remove(name: str, force: bool = False, uri: str | None = None) -> list[Path]:
    """Delete cached image ``name``; returns the files removed.

    An image that VMs still boot from (their disks are overlays on it) is refused,
    naming them, unless ``force``: those VMs would not start again.
    """
    cache = Cache()
    cache.require(check_name(name, "image name"))
    with file_lock(cache.lock_path(name)):
        if not force:
            _refuse_in_use(name, uri, cache)
        removed = cache.remove(name)
        return removed + _remove_uploads(removed, uri)


def _remove_uploads(files: list[Path], uri: str | None) -> list[Path]:
    """Delete the hypervisor's copies of the removed cache ``files`` (the volumes ``up``
    uploaded); none are left when no hypervisor answers (its next ``up`` uploads again)."""
    try:
        with Host(uri) as host:
            return [Path(path) for path in Storage(host.hv).remove_uploads([f.name for f in files])]
    except HypervisorError:
        return []


def images_remove(names: list[str], force: bool = False, uri: str | None = None) -> list[str]:
    """:func:`image_remove` of each of ``names``, all checked (name, cached, not in use)
    before any is removed: one bad name or used image removes nothing. Returns the names."""
    cache = Cache()
    for name in names:
        cache.require(check_name(name, "image name"))
        if not force:
            _refuse_in_use(name, uri, cache)
    for name in names:
        image_remove(name, force, uri)
    return names


def _refuse_in_use(name: str, uri: str | None, cache: Cache) -> None:
    if users := image_users(name, uri, cache):
        raise ImageError(
            f"image {name!r} is in use: {', '.join(users)} boot{'s' if len(users) == 1 else ''} from it",
            hint=f"delete {'that VM' if len(users) == 1 else 'those VMs'} first ('vmctl down NAME'), "
                 "or pass --force (they will no longer start)",
        )


def image_users(name: str, uri: str | None = None, cache: Cache | None = None) -> list[str]:
    """The VMs whose disks are overlays on a version of image ``name``: on the host at
    ``uri`` (those made from it, or backed by it), and in the machines directory (also
    when no hypervisor is reachable: a stopped runtime still has VMs that boot later)."""
    disks = (cache or Cache()).disks(check_name(name, "image name"))
    users = set(overlays_on(disks, machines_dir()))
    try:
        with Host(uri) as host:
            machines = host.list()
            users |= {m.name for m in machines if m.spec.image == name or backed_by(Path(m.record.disk), disks)}
    except HypervisorError:
        pass  # no hypervisor to ask: the machines directory is what there is
    return sorted(users)


def image_test(
    name: str,
    boot: BootMode = "disk",
    timeout: float = 300,
    uri: str | None = None,
    progress: Progress = NoProgress(),
) -> BootReport:
    """Boot cached image ``name`` once and report when it reached each milestone."""
    image = Cache().require(check_name(name, "image name"))
    require_local(resolve_uri(uri), "image test")  # its overlay is a file here
    accel = accelerator(progress)
    with Hypervisor(resolve_uri(uri)) as hv:
        return boot_test(hv, image, machines_dir(), accel, boot, timeout, progress)
