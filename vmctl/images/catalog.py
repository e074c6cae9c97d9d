"""Image definitions (``images/*.yaml``) and the local image cache.

An image is in the cache when both ``NAME.qcow2`` and its record ``NAME.json``
exist; the record is written last, by atomic rename, so a crash or a failed
download never leaves something that looks usable. Work on one image holds the
lock ``NAME.lock``, so concurrent pulls and builds of it serialise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from .._core.locks import replacing
from .._core.paths import cache_dir, data_dir
from ..errors import ConfigError, ImageError, VmctlError
from ..hypervisor.disks import backing_file
from ..model.spec import check_name
from .leftovers import unowned

# What reaches mmdebstrap (run as root) from a definition: each is one argument, and
# none may look like an option. A suite is a plain codename (bookworm, trixie, sid),
# a package a Debian package name (Debian Policy 5.6.7), a mirror an http(s) URL.
SUITE_RE = re.compile(r"[a-z][a-z0-9]{1,31}")
PACKAGE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Download:
    url: str
    checksums: str
    algorithm: str = "sha512"


def check_suite(suite: str, what: str = "suite") -> str:
    """A Debian suite codename (``bookworm``), or :class:`ConfigError`."""
    if not isinstance(suite, str) or not SUITE_RE.fullmatch(suite):
        raise ConfigError(f"invalid {what} {suite!r}: use a plain codename of lower-case letters and digits",
                          hint="for example: bookworm, trixie")
    return suite


def check_package(package: str) -> str:
    """A Debian package name (``openssh-server``), or :class:`ConfigError`."""
    if not isinstance(package, str) or not PACKAGE_RE.fullmatch(package):
        raise ConfigError(f"invalid package name {package!r}: use 2 or more lower-case letters, digits, '+', '-', '.'",
                          hint="list plain package names, for example: openssh-server")
    return package


def check_mirror(mirror: str, what: str = "mirror") -> str:
    """An http(s) URL with a host, no whitespace and no leading ``-``, or :class:`ConfigError`."""
    hint = "use an http:// or https:// URL, for example: http://deb.debian.org/debian"
    if not isinstance(mirror, str) or mirror.startswith("-") or re.search(r"\s", mirror) or _CONTROL.search(mirror):
        raise ConfigError(f"invalid {what} {mirror!r}: a URL has no spaces and does not start with '-'", hint=hint)
    try:
        parts = urlsplit(mirror)
        host = parts.hostname
    except ValueError as e:
        raise ConfigError(f"invalid {what} {mirror!r}: {e}", hint=hint) from e
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"invalid {what} {mirror!r}: not an http(s) URL with a host", hint=hint)
    return mirror


@dataclass(frozen=True)
class Build:
    """A ``build:`` section; checked when made, so nothing unchecked reaches mmdebstrap."""

    suite: str
    mirror: str
    packages: tuple[str, ...]
    kernel_cmdline: str
    disk_gib: int = 3
    tool: str = "mmdebstrap"

    def __post_init__(self) -> None:
        check_suite(self.suite, "build.suite")
        check_mirror(self.mirror, "build.mirror")
        for package in self.packages:
            check_package(package)
        if not isinstance(self.kernel_cmdline, str) or _CONTROL.search(self.kernel_cmdline):
            raise ConfigError(f"invalid build.kernel_cmdline {self.kernel_cmdline!r}: one line of text",
                              hint="write the kernel command line on one line")
        if not isinstance(self.disk_gib, int) or not 1 <= self.disk_gib <= 2048:
            raise ConfigError(f"invalid build.disk_gib {self.disk_gib!r}: a whole number of GiB, 1-2048")


@dataclass(frozen=True)
class ImageDef:
    """One ``images/NAME.yaml``: where an image comes from."""

    name: str
    description: str
    user: str
    path: Path
    download: Download | None = None
    build: Build | None = None


# The modules whose code shapes a built image (see recipe_digest).
BUILD_CODE = tuple(Path(__file__).with_name(m) for m in ("build.py", "initramfs.py"))

# The boot files a built image keeps beside its disk, by record field: the
# kernel and initrd it boots with, and the fast profile's lean initramfs.
BOOT_FILES = {"kernel": "vmlinuz", "initrd": "initrd", "lean_initrd": "initrd-lean"}
# The fast profile's units a build puts in an image: 2 added vmctl-ready.target (the
# VM ready without waiting for cloud-init) and vmctl-grow-root.service; 3 added
# vmctl-cloud-config.service and vmctl-cloud-final.service (cloud-init's later stages
# run by vmctl's units, as cloud-init 24.3's own units need its masked main process).
FAST_BOOT = 3


@dataclass(frozen=True)
class CachedImage:
    """A usable image in the cache."""

    name: str
    path: str
    size: int
    sha256: str
    source: str
    created: float
    kernel: str | None = None
    initrd: str | None = None
    kernel_cmdline: str | None = None
    lean_initrd: str | None = None  # images built before the fast profile's lean initramfs have none
    fast_boot: int = 0  # the version of the fast profile's units in the image (FAST_BOOT); older ones have 0
    user: str = "debian"
    recipe: str = ""  # digest of the definition it came from; a change means rebuild
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_path() -> list[Path]:
    """Directories searched for definitions: ``VMCTL_IMAGE_PATH``, then vmctl's own."""
    extra = [Path(p) for p in os.environ.get("VMCTL_IMAGE_PATH", "").split(":") if p]
    return extra + [data_dir("images")]


def _section(raw: dict[str, Any], key: str, source: Path) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{key}' must be a mapping")
    return value


def parse_definition(raw: Any, source: Path) -> ImageDef:
    """Validate one definition; errors name the file and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        name = check_name(str(raw["name"]), "image name")
        download = _section(raw, "download", source)
        build = _section(raw, "build", source)
        return ImageDef(
            name=name,
            description=str(raw.get("description", "")),
            user=check_name(str(raw.get("user", "debian")), "login user"),
            path=source,
            download=Download(**download) if download else None,
            build=_build(build) if build else None,
        )
    except ConfigError as e:
        raise ConfigError(f"{source}: {e.message}", hint=e.hint) from e
    except KeyError as e:
        raise ConfigError(f"{source}: missing key {e.args[0]!r}") from e
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from e


def _build(raw: dict[str, Any]) -> Build:
    packages = raw.pop("packages")
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise TypeError("'build.packages' must be a list of package names")
    return Build(packages=tuple(packages), **raw)


def recipe_digest(section: Build | Download) -> str:
    """A digest of a build recipe (with the templates a build puts in the image, and
    the code that makes it: a change to either means a rebuild) or a download source."""
    text = json.dumps(asdict(section), sort_keys=True)
    if isinstance(section, Build):
        templates = sorted((data_dir("templates") / "image").glob("*.j2"))
        text += "".join(f"\n{f.name}\n{f.read_text()}" for f in [*templates, *BUILD_CODE])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def definitions() -> dict[str, ImageDef]:
    """Every known definition; earlier directories in the search path win."""
    found: dict[str, ImageDef] = {}
    for directory in reversed(search_path()):
        for file in sorted(directory.glob("*.yaml")):
            image = parse_definition(yaml.safe_load(file.read_text()), file)
            found[image.name] = image
    return found


def definition(name: str) -> ImageDef:
    known = definitions()
    if name not in known:
        raise ImageError(
            f"unknown image {name!r}; known: {', '.join(sorted(known)) or 'none'}",
            hint="add images/NAME.yaml, or set VMCTL_IMAGE_PATH to a directory of definitions",
        )
    return known[name]


WorkKind = Literal["build", "bake"]
_WORK_SUFFIX: dict[WorkKind, str] = {"build": "", "bake": ".qcow2"}


def _is_name(name: str) -> bool:
    try:
        check_name(name)
    except ConfigError:
        return False
    return True


class Cache:
    """The image cache directory (``<cache>/images``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_dir()) / "images"

    def file(self, name: str, suffix: str) -> Path:
        """``NAME.SUFFIX`` in the cache; a name that is not an image name (``../x``,
        ``x\\n``) is refused with :class:`ConfigError` before any path is made."""
        return self.root / f"{check_name(name, 'image name')}.{suffix}"

    def lock_path(self, name: str) -> Path:
        return self.file(name, "lock")

    def get(self, name: str) -> CachedImage | None:
        """The cached image ``name``, or None (also for a name no image can have)."""
        if not _is_name(name):
            return None
        record = self.file(name, "json")
        try:
            image = CachedImage(**json.loads(record.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return image if Path(image.path).exists() else None

    def versioned(self, name: str, sha256: str, suffix: str) -> Path:
        """Where one version of an image's file lives. Overlays point at their base by
        path, so a rebuilt image gets new files and never changes one a VM uses."""
        return self.file(name, f"{sha256[:12]}.{suffix}")

    def disks(self, name: str) -> set[Path]:
        """Every version of image ``name``'s disk in the cache (a VM may boot from any)."""
        return {p.resolve() for p in self.root.glob(f"{check_name(name, 'image name')}.*.qcow2")}

    def require(self, name: str) -> CachedImage:
        check_name(name, "image name")
        image = self.get(name)
        if image is None:
            known = definitions()
            if name not in known:
                cached = [i.name for i in self.images()]
                raise ImageError(
                    f"unknown image {name!r}: no definition and nothing cached by that name",
                    hint=f"known: {', '.join(sorted(set(known) | set(cached)))}",
                )
            raise ImageError(
                f"image {name!r} is not in the cache ({self.root})",
                hint=f"run 'vmctl image build {name}' or 'vmctl image pull {name}'",
            )
        return image

    def stale(self, image: CachedImage) -> str | None:
        """Why a baked ``image`` no longer matches its parent (rebuilt or removed since), or None."""
        parent = image.extra.get("parent")
        if image.source != "bake" or not parent:
            return None
        current = self.get(str(parent))
        if current is None:
            return f"its parent {parent} is no longer cached"
        if "parent_sha256" not in image.extra:
            return "baked before vmctl recorded its parent's version"
        if image.extra["parent_sha256"] != current.sha256:
            return f"its parent {parent} changed since it was baked"
        return None

    def images(self) -> list[CachedImage]:
        names = sorted(p.stem for p in self.root.glob("*.json"))
        return [image for n in names if (image := self.get(n)) is not None]

    def publish(self, image: CachedImage) -> CachedImage:
        """Make ``image`` visible: write its record atomically."""
        with replacing(self.file(image.name, "json")) as f:
            f.write(json.dumps(image.to_dict(), indent=2).encode())
        return image

    def remove(self, name: str) -> list[Path]:
        """Delete everything the cache holds for ``name``; returns what was removed."""
        removed = []
        self.file(name, "json").unlink(missing_ok=True)  # unusable from here on
        for path in sorted(self.root.glob(f"{name}.*")):
            if path.suffix != ".lock" and path.is_file():
                path.unlink()
                removed.append(path)
        return removed

    # work in progress: a build's directory, a bake's disk ---------------------------

    def work(self, kind: WorkKind, name: str) -> Path:
        """Where this process builds (a directory) or bakes (a disk) image ``name``, under
        the image's lock: ``.build-NAME-PID``, ``.bake-NAME-PID.qcow2``."""
        return self.root / f".{kind}-{check_name(name, 'image name')}-{os.getpid()}{_WORK_SUFFIX[kind]}"

    def stale_work(self, kind: WorkKind, holding: str) -> Iterator[Path]:
        """The work of ``kind`` that no live process owns, left by one that was killed:
        image ``holding``'s (the caller holds its lock), and that of every image whose
        lock is free (held while the path is yielded, so no new owner starts meanwhile)."""
        pattern = re.compile(rf"\.{kind}-([a-z0-9-]+)-[0-9]+{re.escape(_WORK_SUFFIX[kind])}")
        for path in sorted(self.root.glob(f".{kind}-*")):
            match = pattern.fullmatch(path.name)
            if match is None or not _is_name(owner := match[1]):
                continue
            if owner == holding:
                yield path
                continue
            with unowned(self.lock_path(owner)) as free:
                if free:
                    yield path


def overlays_on(disks: set[Path], directory: Path) -> list[str]:
    """The names of the ``NAME.qcow2`` overlays in ``directory`` backed by one of ``disks``
    (the machines directory: VMs whose disks would lose their base)."""
    users = []
    for overlay in sorted(directory.glob("*.qcow2")):
        if backed_by(overlay, disks):
            users.append(overlay.name.removesuffix(".qcow2"))
    return users


def backed_by(overlay: Path, disks: set[Path]) -> bool:
    """Whether ``overlay``'s backing file is one of ``disks`` (False if it cannot be read)."""
    try:
        base = backing_file(overlay)
    except VmctlError:
        return False
    return base is not None and base.resolve() in disks


def new_record(name: str, disk: Path, sha256: str, source: str, **extra: Any) -> CachedImage:
    return CachedImage(
        name=name,
        path=str(disk),
        size=disk.stat().st_size,
        sha256=sha256,
        source=source,
        created=time.time(),
        **extra,
    )


def shared_read_only(image: CachedImage) -> None:
    """Keep a cached image's files (disk, kernel, initrds) root's and read-only to everyone
    else: every VM made from it reads them, none may change them. Repairs what libvirt's
    dynamic ownership left behind before domains named their backing store (``relabel="no"``)."""
    for path in filter(None, (image.path, image.kernel, image.initrd, image.lean_initrd)):
        st = os.stat(path)
        if st.st_uid != 0 or st.st_gid != 0:
            os.chown(path, 0, 0)
        if st.st_mode & 0o7133:  # writable or executable by group or others, or set-id bits
            os.chmod(path, 0o644)
