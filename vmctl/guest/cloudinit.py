"""cloud-init NoCloud data, built as data and dumped safely."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .._core.render import render
from ..errors import ConfigError
from .keys import KeyPair

# Keys that would break the pinned host key if user-data changed them.
RESERVED = ("ssh_keys", "ssh_genkeytypes", "ssh_deletekeys")


@dataclass(frozen=True)
class SeedData:
    user_data: str
    meta_data: str
    network_config: str
    # What an SSH login needs, as plain files, for the fast profile's early
    # unit (it runs before cloud-init and has no YAML parser).
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
) -> SeedData:
    config = _load("cloud-init/user-data.yaml.j2", hostname=hostname, user=user,
                   authorized_keys=authorized_keys, host_key=host_key)
    config = merge(config, extra or {})
    meta = merge(_load("cloud-init/meta-data.yaml.j2", instance_id=instance_id, hostname=hostname), meta_extra or {})
    network = _load("cloud-init/network-config.yaml.j2", mac=mac)
    login = {"user": user + "\n", "hostname": hostname + "\n", "host-key": host_key.private,
             "host-key.pub": host_key.public + "\n", "authorized-keys": "".join(k + "\n" for k in authorized_keys)}
    return SeedData(_dump(config, "#cloud-config\n"), _dump(meta), _dump(network), login)
