"""Boot profiles: ``stock`` (the image as it is) and ``fast`` (tuned for boot time).

A profile is data, kept in ``templates/profiles/NAME.yaml``: a boot mode,
extra kernel arguments, NoCloud meta-data, and cloud-config merged under
the user's own.
Pure: reading the file is the only I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    # added to kernel_args when the VM's user-data needs cloud-init, and when it does not
    with_cloud_init: tuple[str, ...] = ()
    without_cloud_init: tuple[str, ...] = ()
    # with cloud-init: the guest unit that runs each later stage, by its module list's key
    stage_units: dict[str, str] = field(default_factory=dict)
    cloud_config: dict[str, Any] = field(default_factory=dict)
    meta_data: dict[str, Any] = field(default_factory=dict)
    # the guest unit that says the VM is ready; "" for cloud-init's own status
    ready_unit: str = ""
    host_grows_root: bool = False  # the host extends the root partition before the first boot

    def under(self, user_config: dict[str, Any], vmctl_keys: Iterable[str] = ()) -> dict[str, Any]:
        """This profile's cloud-config with the user's own over it. A profile that lists
        cloud-init's modules keeps only those the user's keys and ``vmctl_keys`` (vmctl's
        own additions, such as shared folders' ``write_files``) need. A key the user gives
        replaces the profile's whole: a module list given is the full list."""
        keys = {*user_config, *vmctl_keys}
        if any(isinstance(f, dict) and f.get("defer") for f in user_config.get("write_files") or ()):
            keys.add("write_files:defer")  # files written in the final stage, after packages
        trimmed = {k: needed_modules(v, keys) if k in MODULE_LISTS else v for k, v in self.cloud_config.items()}
        return {**trimmed, **user_config}

    def cmdline(self, base: str, config: dict[str, Any] | None = None) -> str:
        """The image's kernel command line with this profile's arguments added. ``config``
        is the VM's cloud-config as :meth:`under` made it, None when nothing in it needs
        cloud-init; a stage left with no module to run is not started at all (each is a
        Python start, 3-4 s under TCG)."""
        if config is None:
            extra = self.without_cloud_init
        else:
            busy = [unit for key, unit in self.stage_units.items() if key not in config or config[key]]
            extra = (*self.with_cloud_init, *(f"systemd.wants={unit}" for unit in busy))
        return " ".join([base, *self.kernel_args, *extra]).strip()


MODULE_LISTS = ("cloud_init_modules", "cloud_config_modules", "cloud_final_modules")
# The cloud-init modules (22.4) that act on each cloud-config key a user may give. A key
# not here keeps every module the profile lists, so nothing the user asked for is dropped.
KEY_MODULES: dict[str, tuple[str, ...]] = {
    "bootcmd": ("bootcmd",),
    "write_files": ("write_files",), "write_files:defer": ("write_files_deferred",),
    "users": ("users_groups",), "groups": ("users_groups",),
    "hostname": ("set_hostname", "update_hostname"), "fqdn": ("set_hostname", "update_hostname"),
    "manage_etc_hosts": ("update_etc_hosts",),
    "mounts": ("mounts",), "swap": ("mounts",),
    "ca_certs": ("ca_certs",), "ca-certs": ("ca_certs",),
    "ssh_pwauth": ("set_passwords",), "chpasswd": ("set_passwords",), "password": ("set_passwords",),
    "runcmd": ("runcmd", "scripts_user"),
    "packages": ("package_update_upgrade_install",), "package_update": ("package_update_upgrade_install",),
    "package_upgrade": ("package_update_upgrade_install",),
    "apt": ("apt_configure",), "timezone": ("timezone",), "locale": ("locale",), "ntp": ("ntp",),
    "final_message": ("final_message",), "power_state": ("power_state_change",),
}


def needed_modules(modules: list[str], keys: set[str]) -> list[str]:
    """The modules of ``modules`` that the cloud-config ``keys`` need, in their order."""
    if any(k not in KEY_MODULES for k in keys):
        return list(modules)
    wanted = {m for k in keys for m in KEY_MODULES[k]}
    return [m for m in modules if m in wanted]


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
        with_cloud_init=tuple(str(a) for a in raw.get("with_cloud_init", ())),
        without_cloud_init=tuple(str(a) for a in raw.get("without_cloud_init", ())),
        stage_units={str(k): str(v) for k, v in (raw.get("stage_units") or {}).items()},
        cloud_config=dict(raw.get("cloud_config") or {}),
        meta_data=dict(raw.get("meta_data") or {}),
        ready_unit=str(raw.get("ready_unit", "")), host_grows_root=bool(raw.get("host_grows_root", False)),
    )
