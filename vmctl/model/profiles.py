"""Boot profiles: ``stock`` (the image as it is) and ``fast`` (tuned for boot time).

A profile is data, kept in ``templates/profiles/NAME.yaml``: a boot mode,
extra kernel arguments, NoCloud meta-data, and cloud-config merged under
the user's own.
Pure: reading the file is the only I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from .._core.paths import data_dir
from ..errors import ConfigError

PROFILES = ("stock", "fast")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = "the image as it is: its boot loader, its cloud-init, its services"
    boot: str | None = None  # forced boot mode, if any
    initrd: str = "image"  # on a kernel boot: the image's own initrd, or vmctl's "lean" one
    kernel_args: tuple[str, ...] = ()
    cloud_config: dict[str, Any] = field(default_factory=dict)
    meta_data: dict[str, Any] = field(default_factory=dict)

    def under(self, user_config: dict[str, Any]) -> dict[str, Any]:
        """This profile's cloud-config with the user's own over it. A key the user
        gives replaces the profile's whole: a module list given is the full list."""
        return {**self.cloud_config, **user_config}

    def cmdline(self, base: str) -> str:
        """The image's kernel command line with this profile's arguments added."""
        return " ".join([base, *self.kernel_args]).strip()


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}", hint=f"use one of: {', '.join(PROFILES)}")
    return name


@cache
def profile(name: str) -> Profile:
    """The profile called ``name`` (``stock`` has no file: it changes nothing)."""
    check_profile(name)
    if name == "stock":
        return Profile("stock")
    raw = yaml.safe_load((data_dir("templates") / "profiles" / f"{name}.yaml").read_text())
    return Profile(
        name=name, description=str(raw["description"]), boot=raw.get("boot"),
        initrd=str(raw.get("initrd", "image")),
        kernel_args=tuple(str(a) for a in raw.get("kernel_args", ())),
        cloud_config=dict(raw.get("cloud_config") or {}),
        meta_data=dict(raw.get("meta_data") or {}),
    )
