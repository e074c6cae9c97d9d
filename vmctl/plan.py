"""Plan files: VMs and pools declared in YAML, validated precisely, converged.

::

    vms:
      web:
        image: debian-12
        cpus: 1
        memory: 768
        docker: true
        user_data: {packages: [htop]}
        mounts: [./src, /srv/cfg:/cfg:ro]   # ./src: beside the plan, at the same path in the VM
    pools:
      swarm:
        size: 2
        managers: 1
      wide:                                  # over two hypervisors, twice as many nodes on b
        size: 3
        hosts: [local, "qemu+ssh://root@host-b/system=2"]
        range: 10.77.0.0/16                  # a /24 of it per host (the default range)

``apply`` creates what is missing, leaves what matches, and reports what
differs; ``destroy`` removes all the plan declares. Applying twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ._core.progress import NoProgress, Progress
from .errors import ConfigError, VmctlError
from .guest.keys import read_public_key
from .machines.host import Host
from .model.mounts import SYNTAX, Mount
from .model.spec import MachineSpec
from .swarm.pool import Pool, PoolSpec

VM_KEYS: dict[str, tuple[type, str]] = {
    "image": (str, "image"), "cpus": (int, "cpus"), "memory": (int, "memory_mib"), "disk": (int, "disk_gib"),
    "boot": (str, "boot"), "network": (str, "network"), "user": (str, "user"), "docker": (bool, "docker"),
    "user_data": (dict, "user_data"), "ssh_keys": (list, "ssh_keys"), "profile": (str, "profile"),
    "ports": (list, "ports"), "mounts": (list, "mounts"),
}
POOL_KEYS: dict[str, tuple[type, str]] = {
    "size": (int, "size"), "managers": (int, "managers"), "image": (str, "image"),
    "cpus": (int, "cpus"), "memory": (int, "memory_mib"), "hosts": (list, "hosts"), "range": (str, "cidr"),
}


@dataclass(frozen=True)
class Plan:
    source: Path
    vms: tuple[MachineSpec, ...]
    pools: tuple[PoolSpec, ...]


@dataclass(frozen=True)
class Outcome:
    kind: str  # vm or pool
    name: str
    action: str  # created, resumed, unchanged, differs, destroyed, absent, failed
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _fields(where: str, raw: Any, schema: dict[str, tuple[type, str]]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        if key not in schema:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(schema)})")
        kind, field = schema[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{where}.{key}: expected {kind.__name__}, got {value!r}")
        out[field] = value
    return out


def _section(path: Path, raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key}: expected a mapping of name -> settings")
    return value


def _build(where: str, factory: Callable[..., Any], **kw: Any) -> Any:
    try:
        return factory(**kw)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.message}", hint=e.hint) from e


def _vm(path: Path, name: str, raw: Any) -> MachineSpec:
    where = f"{path}: vms.{name}"
    fields = _fields(where, raw, VM_KEYS)
    if "user_data" in fields:
        fields["user_data"] = yaml.safe_dump(fields["user_data"], sort_keys=False)
    if "ssh_keys" in fields:
        fields["ssh_keys"] = tuple(read_public_key(path.parent / str(p)) for p in fields["ssh_keys"])
    if "ports" in fields:
        if unquoted := [p for p in fields["ports"] if not isinstance(p, str)]:
            raise ConfigError(f"{where}.ports: {unquoted[0]!r} is not a string: quote each port, as in '8080:80'",
                              hint="YAML 1.1 reads an unquoted 2222:22 as the number 133342")
        fields["ports"] = tuple(fields["ports"])
    if "mounts" in fields:
        fields["mounts"] = _mounts(f"{where}.mounts", path, fields["mounts"])
    return _build(where, MachineSpec, name=str(name), **fields)  # type: ignore[no-any-return]


def _mounts(where: str, path: Path, items: list[Any]) -> tuple[str, ...]:
    """A VM's shared folders; a relative HOSTDIR is taken from the plan's directory, as
    ``ssh_keys`` are, so a plan kept beside a project can share ``./src``."""
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{where}: expected a list of {SYNTAX} strings, got {items!r}")
    base = str(path.parent.absolute())
    return tuple(str(_build(where, Mount.parse, text=item, relative_to=base)) for item in items)


def load(path: Path) -> Plan:
    """Read and validate a plan; errors name the file, the key and what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read plan {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'vms' and/or 'pools'")
    if unknown := set(raw) - {"vms", "pools"}:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(sorted(map(str, unknown)))} (known: vms, pools)"
        )
    vms = tuple(_vm(path, n, v) for n, v in _section(path, raw, "vms").items())
    pools = tuple(
        _build(f"{path}: pools.{n}", PoolSpec, name=str(n), **_fields(f"{path}: pools.{n}", v, POOL_KEYS))
        for n, v in _section(path, raw, "pools").items()
    )
    if not vms and not pools:
        raise ConfigError(f"{path}: declares no vms and no pools")
    return Plan(path, vms, pools)


def apply(plan: Plan, uri: str | None = None, progress: Progress = NoProgress()) -> list[Outcome]:
    """Converge the host to ``plan``."""
    outcomes = [_apply_vm(spec, uri, progress) for spec in plan.vms]
    outcomes += [_apply_pool(spec, uri, progress) for spec in plan.pools]
    return outcomes


def _apply_vm(spec: MachineSpec, uri: str | None, progress: Progress) -> Outcome:
    with Host(uri) as host:
        try:
            if host.hv.exists(spec.name):
                existing = host.get(spec.name)
                wanted = spec.like(existing.spec)
                if diffs := existing.spec.differences(wanted):
                    return Outcome("vm", spec.name, "differs", "; ".join(diffs))
                if not (missing := existing.missing_phases):
                    return Outcome("vm", spec.name, "unchanged")
                progress.phase(f"vm {spec.name}: resuming an interrupted up")
                host.up(wanted, progress=progress).close()
                return Outcome("vm", spec.name, "resumed", f"{', '.join(missing)} done")
            progress.phase(f"vm {spec.name}: creating")
            machine = host.up(spec, progress=progress)
            machine.close()
            return Outcome("vm", spec.name, "created")
        except VmctlError as e:
            return Outcome("vm", spec.name, "failed", e.message)


def _apply_pool(spec: PoolSpec, uri: str | None, progress: Progress) -> Outcome:
    pool = Pool(uri, spec.name, progress)
    try:
        count = len(pool.names())
        if count > spec.size:
            return Outcome("pool", spec.name, "differs", f"size: {spec.size} -> {count} nodes")
        if count == spec.size and all(n["reachable"] for n in pool.status().nodes):
            return Outcome("pool", spec.name, "unchanged")
        pool.up(spec)
        return Outcome("pool", spec.name, "created" if count == 0 else "converged", f"{spec.size} nodes")
    except VmctlError as e:
        return Outcome("pool", spec.name, "failed", e.message)


def teardown(plan: Plan, uri: str | None = None) -> list[Outcome]:
    """Remove every VM and pool the plan declares: each VM under its lock, each pool under
    its pool lock (so neither races an ``up`` of it). One that fails is reported ``failed``
    and the others are still removed."""
    with Host(uri) as host:
        outcomes = [_teardown_vm(host, spec.name) for spec in plan.vms]
    return outcomes + [_teardown_pool(spec.name, uri) for spec in plan.pools]


def _teardown_vm(host: Host, name: str) -> Outcome:
    try:
        removed = host.delete(name)  # takes the VM's lock: an `up` of it finishes first
    except VmctlError as e:
        return Outcome("vm", name, "failed", e.message)
    return Outcome("vm", name, "destroyed" if removed else "absent")


def _teardown_pool(name: str, uri: str | None) -> Outcome:
    try:
        nodes = Pool(uri, name).down(missing_ok=True)
    except VmctlError as e:
        return Outcome("pool", name, "failed", e.message)
    return Outcome("pool", name, "destroyed" if nodes else "absent", f"{len(nodes)} nodes")
