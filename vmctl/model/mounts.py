"""Shared folders: ``HOSTDIR[:GUESTDIR][:ro]``, a host directory the guest mounts at boot.

``GUESTDIR`` defaults to ``HOSTDIR``'s own path, as Lima and Multipass do, so a path
means the same on both sides. Pure values: parsing and checking, no file system.
Whether ``HOSTDIR`` exists is checked where I/O is allowed (``machines.shares``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import ConfigError

SYNTAX = "HOSTDIR[:GUESTDIR][:ro]"
HINT = f"use {SYNTAX} with absolute paths, for example /srv/app or /srv/app:/app:ro"
GUEST_HINT = "give it a directory of its own in the guest, for example HOSTDIR:/srv/NAME or HOSTDIR:/mnt/NAME"
FsDriver = Literal["virtiofs", "9p"]

# Guest directories a share may not cover, i.e. be mounted on or above (a share on
# /var hides /var/lib/docker): the system itself, and what cloud-init, vmctl's
# fast boot and Docker keep in the guest. A share on one would break the VM.
KEEP_VISIBLE = (
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
    "/sys", "/tmp", "/usr", "/var/lib/cloud", "/var/lib/containerd", "/var/lib/docker", "/var/lib/vmctl",
    "/var/log", "/var/tmp",
)
# Nor may it go inside these: kernel file systems, the boot files, container storage.
NOTHING_INSIDE = ("/boot", "/dev", "/proc", "/sys", "/var/lib/containerd", "/var/lib/docker")


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _normal(path: str) -> str:
    """Lexically normal: no ``.``, ``..``, doubled or trailing slashes (``//x`` included)."""
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/") if out.startswith("/") else out


@dataclass(frozen=True)
class Mount:
    """One shared folder: ``host`` (a directory on the hypervisor host) at ``guest`` in the VM."""

    host: str
    guest: str
    readonly: bool = False

    @classmethod
    def parse(cls, text: str, relative_to: str | None = None) -> Mount:
        """``/srv/app``, ``/srv/app:ro``, ``/srv/app:/app``, ``/srv/app:/app:ro`` (``rw`` is the default).

        A relative ``HOSTDIR`` is refused, unless ``relative_to`` (a plan's directory) is given.
        """
        def bad(problem: str, hint: str = HINT) -> ConfigError:
            return ConfigError(f"invalid mount {text!r}: {problem}", hint=hint)

        if any(ord(c) < 32 for c in text):
            raise bad("it contains a control character")
        parts = text.split(":")
        mode = parts.pop() if len(parts) > 1 and not parts[-1].startswith("/") else "rw"
        if mode not in ("ro", "rw"):
            raise bad(f"{mode!r} is neither an absolute GUESTDIR nor ro or rw (paths with ':' cannot be shared)")
        if len(parts) > 2 or not parts[0]:
            raise bad(f"expected {SYNTAX}")
        host = parts[0] if relative_to is None else posixpath.join(relative_to, parts[0])
        if not host.startswith("/"):
            raise bad(f"host directory {parts[0]!r} is not an absolute path",
                      hint=f"give the full path, for example $PWD/{parts[0]}")
        guest = parts[1] if len(parts) == 2 else host
        if not guest.startswith("/"):
            raise bad(f"guest directory {guest!r} is not an absolute path")
        mount = cls(_normal(host), _normal(guest), mode == "ro")
        if problem := mount.guest_problem():
            raise bad(problem, hint=GUEST_HINT)
        return mount

    def guest_problem(self, user: str | None = None) -> str | None:
        """Why the guest directory cannot take a share: it would hide the system, Docker's
        storage or the login ``user``'s SSH keys (a share on ``/home/USER`` would also
        receive them), or it lies where nothing may be mounted. ``None`` if it can."""
        keep = (*KEEP_VISIBLE, f"/home/{user}/.ssh") if user else KEEP_VISIBLE
        if hidden := [k for k in keep if _inside(k, self.guest)]:
            return f"a share on {self.guest} would hide {hidden[0]}"
        if inside := [n for n in NOTHING_INSIDE if _inside(self.guest, n)]:
            return f"{self.guest} is inside {inside[0]}, where nothing may be mounted"
        return None

    def __str__(self) -> str:
        """The normal form kept in the spec: ``HOSTDIR:GUESTDIR`` and ``:ro`` when read-only."""
        return f"{self.host}:{self.guest}" + (":ro" if self.readonly else "")


def parse_mounts(texts: Iterable[str], user: str | None = None, relative_to: str | None = None) -> tuple[Mount, ...]:
    """Every mount parsed, in order; a guest directory given twice, or inside another share, is refused."""
    if isinstance(texts, str):
        raise ConfigError(f"mounts must be a list of {SYNTAX} strings, not the string {texts!r}")
    mounts = tuple(Mount.parse(t, relative_to) for t in texts)
    for i, mount in enumerate(mounts):
        if problem := mount.guest_problem(user):
            raise ConfigError(f"invalid mount {str(mount)!r}: {problem}", hint=GUEST_HINT)
        for other in mounts[:i]:
            if mount.guest == other.guest:
                raise ConfigError(f"mounts {other} and {mount} both want guest directory {mount.guest}",
                                  hint="give each share its own GUESTDIR")
            outer, inner = (other, mount) if _inside(mount.guest, other.guest) else (mount, other)
            if _inside(inner.guest, outer.guest):
                raise ConfigError(f"mount {inner} is inside the share {outer}",
                                  hint="share the directories side by side, not one inside another")
    return mounts


def mount_tag(index: int) -> str:
    """The name a share goes by between QEMU and the guest (the ``mount`` source):
    short, as 9p allows 31 bytes, and the same in the domain XML and the guest's fstab."""
    return f"vmctl{index}"


@dataclass(frozen=True)
class Shares:
    """A VM's shared folders as the domain needs them: the mounts and how they reach the guest.

    ``virtiofs`` (libvirt starts ``virtiofsd`` for each, and the guest's memory must be
    shared with it) or ``9p`` (served by QEMU itself, for hosts without virtiofsd).
    """

    mounts: tuple[Mount, ...]
    driver: FsDriver = "virtiofs"
    virtiofsd: Path | None = None

    def __post_init__(self) -> None:
        if self.driver == "virtiofs" and self.virtiofsd is None:
            raise ConfigError("virtiofs shares need the path of virtiofsd")

    @property
    def tagged(self) -> list[tuple[str, Mount]]:
        """``(tag, mount)`` for each mount, in order."""
        return [(mount_tag(i), m) for i, m in enumerate(self.mounts)]
