"""cloud-init NoCloud data, built as data and dumped safely."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from .._core.render import render
from ..errors import ConfigError
from ..model.mounts import Shares
from .keys import KeyPair

# Keys that would break the pinned host key if user-data changed them.
RESERVED = ("ssh_keys", "ssh_genkeytypes", "ssh_deletekeys")


@dataclass(frozen=True)
class SeedData:
    user_data: str
    meta_data: str
    network_config: str
    # What an SSH login needs, and /etc/hosts, as plain files, for the fast
    # profile's early unit (it runs before cloud-init and has no YAML parser).
    login: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        return {
            "user-data": self.user_data.encode(),
            "meta-data": self.meta_data.encode(),
            "network-config": self.network_config.encode(),
            **{f"vmctl-{k}": v.encode() for k, v in self.login.items()},
        }


def parse_user_data(text: str, source: str = "user-data") -> dict[str, Any]:
    """Extra cloud-config from the user: a YAML mapping without vmctl's reserved keys."""
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a cloud-config mapping, not {type(data).__name__}")
    if clash := [k for k in RESERVED if k in data]:
        raise ConfigError(f"{source} sets {', '.join(clash)}, which vmctl manages to pin the host key")
    return data


def merge(base: Any, extra: Any) -> Any:
    """Deep merge: mappings merge key by key, lists concatenate, scalars from ``extra`` win."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(extra, list):
        return base + extra
    return extra


# What marks vmctl's own fstab lines (mount(8) ignores comment=), so a bake can drop them.
FSTAB_MARK = "comment=vmctl"
# A Docker host's containers may bind-mount a share: it is there before dockerd starts
# (nofail takes the mount out of local-fs.target's ordering, so say so explicitly).
MOUNT_OPTIONS = ("nofail", "x-systemd.before=docker.service", FSTAB_MARK)
DRIVER_OPTIONS = {"virtiofs": (), "9p": ("trans=virtio", "version=9p2000.L", "msize=262144")}


def _fstab_field(text: str) -> str:
    """A field as fstab(5) wants it: blanks and backslashes as octal escapes (a space is \\040)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\\" else c for c in text)


def fstab_lines(shares: Shares) -> list[str]:
    """One fstab line per share: its tag, where the guest mounts it, and how."""
    lines = []
    for tag, mount in shares.tagged:
        options = ("ro" if mount.readonly else "rw", *DRIVER_OPTIONS[shares.driver], *MOUNT_OPTIONS)
        lines.append("\t".join([tag, _fstab_field(mount.guest), shares.driver, ",".join(options), "0", "0"]))
    return lines


MOUNT_KEYS = ("write_files", "runcmd")  # the cloud-config keys mount_config uses


def mount_config(shares: Shares | None) -> dict[str, Any]:
    """cloud-config that mounts the shares at every boot, in both boot profiles.

    The lines go into /etc/fstab (nofail: a share that is gone never stops a boot),
    so systemd mounts them on each later boot. They are appended by write_files in
    cloud-init's init stage (a module the fast profile keeps), once per instance; as
    that stage runs after local-fs.target, runcmd (kept too) starts the new mount
    units on the first boot. A failed mount fails runcmd, so cloud-init and the
    ``up`` waiting for it report it. Not cloud-init's ``mounts`` module: it drops
    every entry whose device is not a block device (a share's tag is not).
    """
    if not shares or not shares.mounts:
        return {}
    return {
        "write_files": [{"path": "/etc/fstab", "append": True, "content": "".join(
            line + "\n" for line in fstab_lines(shares))}],
        "runcmd": [["systemctl", "daemon-reload"], ["systemctl", "start", *(m.guest for m in shares.mounts)]],
    }


def _load(template: str, **context: Any) -> Any:
    return yaml.safe_load(render(template, **context))


def _dump(data: Any, header: str = "") -> str:
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def seed_data(
    *,
    hostname: str,
    instance_id: str,
    user: str,
    authorized_keys: list[str],
    host_key: KeyPair,
    mac: str,
    extra: dict[str, Any] | None = None,
    meta_extra: dict[str, Any] | None = None,
    shares: Shares | None = None,
) -> SeedData:
    config = _load("cloud-init/user-data.yaml.j2", hostname=hostname, user=user,
                   authorized_keys=authorized_keys, host_key=host_key)
    config = merge(merge(config, mount_config(shares)), extra or {})
    meta = merge(_load("cloud-init/meta-data.yaml.j2", instance_id=instance_id, hostname=hostname), meta_extra or {})
    network = _load("cloud-init/network-config.yaml.j2", mac=mac)
    login = {"user": user + "\n", "hostname": hostname + "\n", "host-key": host_key.private,
             "host-key.pub": host_key.public + "\n", "authorized-keys": "".join(k + "\n" for k in authorized_keys),
             "hosts": render("cloud-init/hosts.j2", hostname=hostname)}
    return SeedData(_dump(config, "#cloud-config\n"), _dump(meta), _dump(network), login)


def cloud_init_errors(status_json: str) -> list[str]:
    """The errors of every stage in cloud-init's ``/run/cloud-init/status.json`` (each
    stage writes it; a stage vmctl did not start is absent); an unreadable file, or a
    stage still running, is itself the error."""
    try:
        status = json.loads(status_json)["v1"]
        stages = {k: v for k, v in status.items() if isinstance(v, dict) and "errors" in v}
    except (ValueError, KeyError, TypeError, AttributeError):
        return ["cloud-init left no status in /run/cloud-init/status.json (did it run?)"]
    if status.get("stage"):
        return [f"cloud-init is still in its {status['stage']} stage"]
    return [f"{stage}: {error}" for stage, data in stages.items() for error in data["errors"] or ()]
