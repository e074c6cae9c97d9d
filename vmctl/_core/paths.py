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

import grp
import importlib.util
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError


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


QEMU_GROUP = "libvirt-qemu"  # the guests' QEMU runs as this user and group (Debian's libvirt-daemon-system)


def qemu_gid() -> int | None:
    """The group ID of the guests' QEMU user, or None where libvirt's user does not exist."""
    try:
        return grp.getgrnam(QEMU_GROUP).gr_gid
    except KeyError:
        return None


def private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or tighten it: nobody but its owner may list or read it.

    The guests' QEMU user may pass through it (mode 0710, group libvirt-qemu) to
    open the disk libvirt hands it; it can neither list the directory nor read a
    file in it that libvirt did not give it. Made with the mode: never open for a moment.
    A symlink, or a directory someone else owns, is refused: root would otherwise
    change the mode of whatever it points to, or write where another user can."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise ConfigError(f"{path} is not a directory of this user's (a symlink, a file, or owned by UID "
                          f"{st.st_uid})", hint="point VMCTL_STATE_DIR at a directory vmctl may create itself")
    gid = qemu_gid() if os.geteuid() == 0 else None  # (a user's own session libvirt runs QEMU as that user)
    if gid is None:
        os.chmod(path, 0o700)
    else:
        os.chown(path, 0, gid)
        os.chmod(path, 0o710)
    return path


def closed_ancestor(path: Path, uid: int, gids: set[int]) -> Path | None:
    """The first directory above ``path`` that user ``uid`` (in groups ``gids``) cannot pass through."""
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return parent
    return None


def private_machines_dir() -> Path:
    """The machines directory, made private (0710 root:libvirt-qemu, state directory too),
    checked to be reachable by the guests' QEMU user: refused now rather than at a VM's start."""
    private_dir(state_dir())
    directory = private_dir(machines_dir())
    try:
        user = pwd.getpwnam(QEMU_GROUP)
    except KeyError:
        return directory  # no unprivileged QEMU user on this host: libvirt runs QEMU as it is told
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    if closed := closed_ancestor(directory, user.pw_uid, groups):
        raise ConfigError(
            f"the guests' QEMU user {QEMU_GROUP} cannot reach {directory}: {closed} is closed to it "
            f"(mode {closed.stat().st_mode & 0o777:o})",
            hint="keep VMCTL_STATE_DIR under directories others may pass through (the default "
            f"/var/lib/vmctl is), or 'chmod o+x {closed}'",
        )
    return directory


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
