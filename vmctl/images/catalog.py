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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._core.locks import replacing
from .._core.paths import cache_dir, data_dir
from ..errors import ConfigError, ImageError
from ..model.spec import check_name


@dataclass(frozen=True)
class Download:
    url: str
    checksums: str
    algorithm: str = "sha512"


@dataclass(frozen=True)
class Build:
    suite: str
    mirror: str
    packages: tuple[str, ...]
    kernel_cmdline: str
    disk_gib: int = 3
    tool: str = "mmdebstrap"


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


class Cache:
    """The image cache directory (``<cache>/images``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_dir()) / "images"

    def file(self, name: str, suffix: str) -> Path:
        return self.root / f"{name}.{suffix}"

    def lock_path(self, name: str) -> Path:
        return self.file(name, "lock")

    def get(self, name: str) -> CachedImage | None:
        record = self.file(name, "json")
        try:
            image = CachedImage(**json.loads(record.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return image if Path(image.path).exists() else None

    def versioned(self, name: str, sha256: str, suffix: str) -> Path:
        """Where one version of an image's file lives. Overlays point at their base by
        path, so a rebuilt image gets new files and never changes one a VM uses."""
        return self.root / f"{name}.{sha256[:12]}.{suffix}"

    def require(self, name: str) -> CachedImage:
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
