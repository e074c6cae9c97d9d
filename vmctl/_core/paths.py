"""Where vmctl keeps things on the host.

============  ============================  =================================
what          default (root)                 override
============  ============================  =================================
image cache   ``/var/cache/vmctl``           ``VMCTL_CACHE_DIR``
state         ``/var/lib/vmctl``             ``VMCTL_STATE_DIR``
============  ============================  =================================

A non-root user gets ``~/.cache/vmctl`` and ``~/.local/share/vmctl`` instead.
The state directory holds the private hypervisor runtime (``runtime/``), the
accelerator verdict (``accel.json``) and the VMs' disks (``machines/``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


def _is_root() -> bool:
    return os.geteuid() == 0


def cache_dir() -> Path:
    """The image cache directory."""
    if env := os.environ.get("VMCTL_CACHE_DIR"):
        return Path(env)
    if _is_root():
        return Path("/var/cache/vmctl")
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vmctl"


def state_dir() -> Path:
    """The state directory (runtime, accelerator verdict, machines)."""
    if env := os.environ.get("VMCTL_STATE_DIR"):
        return Path(env)
    if _is_root():
        return Path("/var/lib/vmctl")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local/share")) / "vmctl"


def machines_dir() -> Path:
    """Where the VMs' disks, seeds, logs and locks live."""
    return state_dir() / "machines"


DEBIAN_MIRROR = "http://deb.debian.org/debian"


def debian_mirror(default: str = DEBIAN_MIRROR) -> str:
    """The Debian mirror the host fetches from: ``$VMCTL_DEBIAN_MIRROR``, else ``default``
    (an image definition's own mirror, or Debian's redirector)."""
    return os.environ.get("VMCTL_DEBIAN_MIRROR") or default


def data_dir(name: str) -> Path:
    """A data directory shipped with vmctl: ``templates`` or ``images``.

    An installed vmctl carries them as the packages ``vmctl.templates`` and
    ``vmctl.image_defs``; a source checkout has them at the top level.
    """
    package = {"templates": "vmctl.templates", "images": "vmctl.image_defs"}[name]
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    for location in (spec and spec.submodule_search_locations) or []:
        if Path(location).is_dir():
            return Path(location)
    return Path(__file__).resolve().parents[2] / name


@dataclass(frozen=True)
class RuntimePaths:
    """The directories of the private libvirt runtime, all under one root."""

    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def sock_dir(self) -> Path:
        return self.root / "sock"

    @property
    def socket(self) -> Path:
        return self.sock_dir / "libvirt-sock"

    @property
    def state_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "runtime.lock"

    def pid_file(self, daemon: str) -> Path:
        return self.root / f"{daemon}.pid"

    def bind_mounts(self) -> list[tuple[Path, Path]]:
        """(private dir, system dir) pairs mounted over libvirt's fixed paths."""
        return [
            (self.etc, Path("/etc/libvirt")),
            (self.run, Path("/run/libvirt")),
            (self.lib, Path("/var/lib/libvirt")),
            (self.log, Path("/var/log/libvirt")),
            (self.cache, Path("/var/cache/libvirt")),
        ]


def runtime_paths() -> RuntimePaths:
    return RuntimePaths(state_dir() / "runtime")
