"""The Python API: what the CLI calls, and what other tools import.

Nothing here prints or exits; failures raise :class:`vmctl.VmctlError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import build as _build
from . import download as _download
from .boottest import Boot, BootReport, boot_test
from .errors import ImageError, RuntimeStateError
from .hypervisor import Hypervisor
from .images import Cache, CachedImage, definition
from .locks import file_lock
from .paths import state_dir
from .progress import NoProgress, Progress
from .render import network_xml, pool_xml
from .runtime import Runtime, RuntimeStatus
from .spec import NetworkSpec

if TYPE_CHECKING:
    from .host import Host

SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
DEFAULT_NETWORK = NetworkSpec()
POOL = "vmctl"


def machines_dir() -> Path:
    return state_dir() / "machines"


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``$VMCTL_CONNECT``, else the private runtime, else the system libvirtd."""
    if uri:
        return uri
    if env := os.environ.get("VMCTL_CONNECT"):
        return env
    runtime = Runtime()
    if runtime.is_running():
        return runtime.uri
    if SYSTEM_SOCKET.exists():
        return "qemu:///system"
    raise RuntimeStateError("no libvirt daemon is running and vmctl's runtime is stopped")


def connect(uri: str | None = None) -> "Host":
    """A :class:`~vmctl.host.Host` for ``uri`` (resolved as :func:`resolve_uri` does)."""
    from .host import Host

    return Host(uri)


def prepare_host(hv: Hypervisor, network: NetworkSpec = DEFAULT_NETWORK) -> None:
    """Make sure the network and storage pool vmctl's VMs use exist and are active."""
    machines_dir().mkdir(parents=True, exist_ok=True)
    hv.ensure_network(network.name, network_xml(network))
    hv.ensure_pool(POOL, pool_xml(POOL, str(machines_dir())))


def hypervisor_start(progress: Progress = NoProgress()) -> RuntimeStatus:
    """Start vmctl's private runtime (idempotent) with its network and storage."""
    runtime = Runtime()
    progress.phase("starting libvirtd and virtlogd")
    status = runtime.start()
    progress.phase("preparing network and storage")
    with Hypervisor(runtime.uri) as hv:
        prepare_host(hv)
    return status


def hypervisor_stop() -> RuntimeStatus:
    """Stop the private runtime: its guests, DHCP servers and daemons; drop its namespace."""
    return Runtime().stop()


def hypervisor_status() -> RuntimeStatus:
    return Runtime().status()


def image_list() -> list[CachedImage]:
    return Cache().images()


def image_stale(image: CachedImage) -> str | None:
    """Why a baked image no longer matches its parent image, or None."""
    return Cache().stale(image)


def image_build(name: str, progress: Progress = NoProgress()) -> CachedImage:
    """Build ``name`` locally from its recipe (returns the cached one if present)."""
    image = definition(name)
    if image.build is None:
        raise ImageError(f"image {name!r} has no build recipe", hint=f"try 'vmctl image pull {name}'")
    return _build.build(name, image.build, image.user, Cache(), progress)


def image_pull(name: str, progress: Progress = NoProgress()) -> CachedImage:
    """Download and verify ``name`` (returns the cached one if present)."""
    image = definition(name)
    if image.download is None:
        raise ImageError(f"image {name!r} has no download source", hint=f"try 'vmctl image build {name}'")
    return _download.pull(name, image.download, image.user, Cache(), progress)


def image_remove(name: str) -> list[Path]:
    cache = Cache()
    cache.require(name)
    with file_lock(cache.lock_path(name)):
        return cache.remove(name)


def accelerator(progress: Progress = NoProgress()) -> str:
    """``kvm`` or ``tcg``: the cached verdict of ``vmctl doctor``, probing if there is none."""
    from .accel import cached_verdict, decide

    if (verdict := cached_verdict()) is None:
        progress.phase("probing the accelerator (kvm, then tcg)")
        verdict = decide()
    return verdict.accel


def image_test(
    name: str,
    boot: Boot = "disk",
    timeout: float = 300,
    uri: str | None = None,
    progress: Progress = NoProgress(),
) -> BootReport:
    """Boot cached image ``name`` once and report when it reached each milestone."""
    image = Cache().require(name)
    accel = accelerator(progress)
    with Hypervisor(resolve_uri(uri)) as hv:
        return boot_test(hv, image, machines_dir(), accel, boot, timeout, progress)
