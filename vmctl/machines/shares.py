"""Shared folders, host side: the directories exist, and how they reach the guest.

virtiofs when the host has ``virtiofsd`` (libvirt starts one per share; Debian 12
ships QEMU's C one in qemu-system-common), else 9p, which QEMU serves itself but
which the guest's kernel must support: Debian's cloud kernel, the one vmctl's
images boot, is built without it (``# CONFIG_NET_9P is not set``), so there the
fallback is refused up front rather than left to fail in the guest.
"""

from __future__ import annotations

import shlex
import struct
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, MissingDependency
from ..images.catalog import CachedImage
from ..model.mounts import Mount, Shares
from ..model.spec import MachineSpec

# Where virtiofsd lives: the Rust one (Debian 13's package, Fedora), QEMU's C one (Debian 12).
VIRTIOFSD = (Path("/usr/libexec/virtiofsd"), Path("/usr/lib/qemu/virtiofsd"), Path("/usr/lib/virtiofsd"))
# Kernel flavours known to lack 9p, by a part of their release string.
NO_9P = ("-cloud-",)


def shares_for(spec: MachineSpec, image: CachedImage, virtiofsd: Sequence[Path] = VIRTIOFSD) -> Shares | None:
    """What the domain and the guest need for ``spec``'s mounts; ``None`` when it has none.

    Every error is raised before anything is made: a missing host directory, or
    (without virtiofsd) an image whose kernel cannot mount 9p.
    """
    mounts = spec.shared_folders
    if not mounts:
        return None
    for mount in mounts:
        check_host_dir(mount)
    binary = next((p for p in virtiofsd if p.is_file()), None)
    if binary is not None:
        return Shares(mounts, "virtiofs", binary)
    release = kernel_release(Path(image.kernel)) if image.kernel else None
    if release and any(flavour in release for flavour in NO_9P):
        raise MissingDependency(
            f"shared folders need virtiofsd on this host, or 9p in the guest's kernel, and image "
            f"{image.name!r} boots {release.split()[0]}, which has no 9p",
            hint="install virtiofsd (Debian 12: apt install qemu-system-common; later: apt install virtiofsd)",
        )
    return Shares(mounts, "9p")


def check_host_dir(mount: Mount) -> None:
    """The host side of a share must be an existing directory: virtiofsd and QEMU open it at start."""
    path = Path(mount.host)
    if not path.exists():
        raise ConfigError(f"mount {str(mount)!r}: host directory {mount.host} does not exist",
                          hint=f"create it first (mkdir -p {shlex.quote(mount.host)}) or correct the path")
    if not path.is_dir():
        raise ConfigError(f"mount {str(mount)!r}: {mount.host} is not a directory",
                          hint="share the directory that holds it")


def kernel_release(kernel: Path) -> str | None:
    """The version string of an x86 bzImage (``6.1.0-50-cloud-amd64 (debian-kernel@...) #1 ...``),
    read from its setup header; ``None`` if the file is not one."""
    try:
        with kernel.open("rb") as f:
            header = f.read(0x8000)
    except OSError:
        return None
    if header[0x202:0x206] != b"HdrS" or len(header) < 0x210:
        return None
    offset = 0x200 + struct.unpack_from("<H", header, 0x20E)[0]
    text = header[offset:offset + 256].split(b"\0", 1)[0]
    return text.decode("ascii", "replace") or None
