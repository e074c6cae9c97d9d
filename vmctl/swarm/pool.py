"""A Docker Swarm host pool: VMs provisioned as Docker hosts, joined into one swarm.

Operations on several nodes return a result per node, and raise one
:class:`PoolError` carrying them all when any failed (fabric's GroupResult /
GroupException shape): the nodes that worked stay usable, and re-running
converges, since every step checks before it acts.

``up``, ``scale`` and ``down`` of one pool hold its lock (``NAME.pool.lock`` in the
machines directory), so two of them never race (two ``swarm init``, a node deleted
while it joins). A VM named like a node but not made for the pool is never adopted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from .._core.locks import file_lock
from .._core.paths import machines_dir
from .._core.progress import Labelled, NoProgress, Progress, Serialized
from ..engine.install import install
from ..errors import ConfigError, NoAddress, PoolError, VmctlError
from ..images.catalog import Cache
from ..machines.host import Host
from ..machines.machine import Machine
from ..model.spec import MachineSpec, check_name, check_range
from . import ops as swarm

T = TypeVar("T")
LABEL_POOL, LABEL_VM = "vmctl.pool", "vmctl.vm"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    size: int = 2
    managers: int = 1
    image: str = "debian-12"
    cpus: int = 2
    memory_mib: int = 1024

    def __post_init__(self) -> None:
        check_name(self.name, "pool name")
        if len(self.name) > 56:
            raise ConfigError(f"pool name {self.name!r} is too long: at most 56 characters (nodes are NAME-N)")
        check_range(self.size, 1, 32, "pool size")
        check_range(self.managers, 1, 7, "managers")
        if self.managers > self.size:
            raise ConfigError(f"managers ({self.managers}) cannot exceed the pool size ({self.size})")

    def node(self, index: int) -> MachineSpec:
        """A node: a Docker host (so it gets a forwarded Docker socket) that belongs to the pool."""
        return MachineSpec(f"{self.name}-{index}", image=self.image, cpus=self.cpus,
                           memory_mib=self.memory_mib, pool=self.name, docker=True)


@dataclass
class PoolStatus:
    name: str
    nodes: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "size": len(self.nodes), "nodes": self.nodes}


def docker_image(image: str, cache: Cache | None = None) -> str:
    """``IMAGE-docker`` when such a baked image is cached (Docker only checked), else ``image``."""
    baked = f"{image}-docker"
    return baked if (cache or Cache()).get(baked) is not None else image


def index_of(name: str, pool: str) -> int:
    m = re.fullmatch(rf"{re.escape(pool)}-(\d+)", name)
    return int(m.group(1)) if m else 0


def lock_path(pool: str) -> Path:
    """The pool's lock file; a VM's files are ``VMNAME.SUFFIX`` and a VM name has no dot,
    so no VM's file is ever this one."""
    return machines_dir() / f"{check_name(pool, 'pool name')}.pool.lock"


def members(host: Host, pool: str) -> list[Machine]:
    """The pool's VMs (those whose record says they belong to ``pool``), by node index."""
    check_name(pool, "pool name")
    found = [m for m in host.list() if m.spec.pool == pool]
    return sorted(found, key=lambda m: index_of(m.name, pool))


def each(items: list[T], fn: Callable[[T], object], key: Callable[[T], str]) -> dict[str, object]:
    """Run ``fn`` on every item in parallel: a map of key -> result or exception."""
    def safe(item: T) -> object:
        try:
            return fn(item)
        except Exception as e:  # collected, reported per node
            return e

    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return dict(zip([key(i) for i in items], pool.map(safe, items), strict=True))


def _check(pool: str, action: str, results: dict[str, object]) -> None:
    if any(isinstance(v, BaseException) for v in results.values()):
        raise PoolError(pool, action, results)


class Pool:
    """A pool on one host. Nodes are ``NAME-1``, ``NAME-2``...; the first ``managers`` are managers."""

    def __init__(self, uri: str | None, name: str, progress: Progress = NoProgress()) -> None:
        # nodes are made in parallel threads, each reporting here
        self.uri, self.name, self.progress = uri, check_name(name, "pool name"), Serialized(progress)

    def _phase(self, text: str) -> None:
        self.progress.phase(text)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pool's lock: one ``up``, ``scale`` or ``down`` of it at a time, on this host."""
        with file_lock(lock_path(self.name), what=f"pool {self.name}", progress=self.progress):
            yield

    def _node(self, host: Host, name: str) -> Machine:
        """The existing VM ``name``, refused unless it was made as a node of this pool."""
        machine = host.get(name)
        if machine.spec.pool != self.name:
            raise ConfigError(
                f"VM {name} exists but is not a node of pool {self.name}",
                hint=f"remove it ('vmctl down {name}') or choose another pool name; a pool never adopts a VM",
            )
        return machine

    def _refuse_strangers(self, wanted: list[MachineSpec]) -> None:
        """Before anything is touched: every existing VM named like a wanted node is a node of the pool."""
        with Host(self.uri) as host:
            for spec in wanted:
                if host.hv.exists(spec.name):
                    self._node(host, spec.name)

    def _provision(self, spec: MachineSpec) -> str:
        progress = Labelled(self.progress, spec.name)
        with Host(self.uri) as host:
            if host.hv.exists(spec.name):  # an existing node keeps the spec it was made with
                machine = self._node(host, spec.name)
                if machine.missing_phases:  # a pool up or scale was interrupted while making it
                    machine = host.up(machine.spec, progress=progress)
                elif machine.state != "running":
                    self._phase(f"{spec.name}: starting")
                    machine.start()
            else:
                self._phase(f"{spec.name}: creating")
                machine = host.up(spec, progress=progress)
            self._phase(f"{spec.name}: Docker")
            install(machine, live_restore=False)  # live-restore is incompatible with swarm mode
            machine.close()
            return machine.name

    def up(self, spec: PoolSpec) -> PoolStatus:
        """Create what is missing (VMs, Docker, swarm membership, labels) up to ``spec.size``.

        A VM that exists under a node's name but is not a node of this pool is refused
        (:class:`ConfigError`) before any VM is created, started or changed."""
        if spec.name != self.name:
            raise ConfigError(f"pool {self.name}: the spec is for pool {spec.name}")
        with self.locked():
            return self._up(spec)

    def _up(self, spec: PoolSpec) -> PoolStatus:
        spec = replace(spec, image=docker_image(spec.image))
        wanted = [spec.node(i) for i in range(1, spec.size + 1)]
        self._refuse_strangers(wanted)
        with Host(self.uri) as host:
            existing = {m.name for m in members(host, self.name)}
        results = each(wanted, self._provision, key=lambda s: s.name)
        _check(self.name, "creating nodes", results)
        self._join(spec.managers)
        created = sorted(set(results) - existing)
        self._phase(f"ready ({len(created)} node(s) created)")
        return self.status()

    def join(self, managers: int) -> None:
        """Initialise the swarm on node 1 and join every other node, as manager or worker."""
        with self.locked():
            self._join(managers)

    def _join(self, managers: int) -> None:
        with Host(self.uri) as host:
            nodes = members(host, self.name)
            if not nodes:
                raise ConfigError(f"pool {self.name!r} has no nodes", hint=f"'vmctl pool up {self.name} --size N'")
            first = nodes[0]
            self._phase(f"swarm init on {first.name}")
            address = self._ip(first)
            swarm.init(first, address)
            tokens = {role: swarm.join_token(first, role) for role in ("manager", "worker")}

            def join_one(node: Machine) -> str:
                role = "manager" if index_of(node.name, self.name) <= managers else "worker"
                self._phase(f"{node.name}: joining as {role}")
                node_id = swarm.join(node, self._ip(node), tokens[role], address)
                node.close()
                return node_id

            results = each(nodes[1:], join_one, key=lambda m: m.name)
            _check(self.name, "joining the swarm", results)
            self._phase("labelling nodes")
            ready = swarm.wait_ready(first, {n.name for n in nodes})
            for node in ready:
                if node.hostname in {n.name for n in nodes}:
                    swarm.label(first, node.id, {LABEL_POOL: self.name, LABEL_VM: node.hostname})
            first.close()

    @staticmethod
    def _ip(machine: Machine) -> str:
        ip = machine.ip
        if ip is None:
            raise NoAddress(machine.name, machine.state)
        return ip

    def manager(self, host: Host) -> Machine:
        """A reachable manager of the pool."""
        errors = []
        for node in members(host, self.name):
            try:
                if node.state == "running" and swarm.state(node)[2]:
                    return node
            except VmctlError as e:
                errors.append(f"{node.name}: {e.message}")
        raise VmctlError(f"pool {self.name!r} has no reachable manager" + (f" ({'; '.join(errors)})" if errors else ""),
                         hint=f"'vmctl pool status {self.name}'")

    def status(self) -> PoolStatus:
        with Host(self.uri) as host:
            nodes = members(host, self.name)
            if not nodes:
                raise ConfigError(f"no pool named {self.name!r}", hint="'vmctl pool ls' lists the pools")
            try:
                manager = self.manager(host)
                swarm_nodes = {n.hostname: n for n in swarm.nodes(manager)}
                manager.close()
            except VmctlError:
                swarm_nodes = {}
            out: list[dict[str, object]] = []
            for m in nodes:
                n = swarm_nodes.get(m.name)
                out.append({"name": m.name, "vm_state": m.state, "ip": m.ip,
                            "role": n.role if n else None, "manager_status": n.manager_status if n else None,
                            "availability": n.availability if n else None, "reachable": bool(n and n.status == "ready"),
                            "status": n.status if n else "not in swarm", "engine": n.engine if n else None,
                            "labels": n.labels if n else {}})
            return PoolStatus(self.name, out)

    def scale(self, size: int, managers: int | None = None) -> PoolStatus:
        """Grow (create and join) or shrink (drain, leave, delete) to ``size`` nodes."""
        check_range(size, 1, 32, "pool size")
        with self.locked():
            return self._scale(size, managers)

    def _scale(self, size: int, managers: int | None) -> PoolStatus:
        with Host(self.uri) as host:
            nodes = members(host, self.name)
            if not nodes:
                lock_path(self.name).unlink(missing_ok=True)  # no pool: leave no lock file of it either
                raise ConfigError(f"no pool named {self.name!r}", hint="'vmctl pool ls' lists the pools")
            template = nodes[0].spec
            manager = self.manager(host)
            current = swarm.nodes(manager)
            managers = managers or sum(1 for n in current if n.role == "manager") or 1
            if size >= len(nodes):
                manager.close()
                spec = PoolSpec(
                    self.name, size, min(managers, size), template.image, template.cpus, template.memory_mib
                )
                return self._up(spec)
            roles = {n.hostname: n.role for n in current}
            victims = [n for n in reversed(nodes) if roles.get(n.name) != "manager"][: len(nodes) - size]
            if len(victims) < len(nodes) - size:
                manager.close()
                raise ConfigError(
                    f"pool {self.name} has {len(nodes) - len(victims)} managers; it cannot shrink to {size} node(s)",
                    hint="scale to at least the number of managers",
                )
            ids = {n.hostname: n.id for n in current}

            def remove(node: Machine) -> list[str]:
                self._phase(f"{node.name}: draining and leaving")
                if node.name in ids:
                    swarm.drain_and_remove(manager, node, ids[node.name])
                self._phase(f"{node.name}: deleting")
                return node.down()

            results = {}
            for victim in victims:  # one at a time: the swarm keeps quorum and capacity
                results.update(each([victim], remove, key=lambda m: m.name))
            manager.close()
            _check(self.name, "removing nodes", results)
        return self.status()

    def down(self, missing_ok: bool = False) -> list[str]:
        """Destroy every VM of the pool; returns their names. A pool with no VMs is a
        :class:`ConfigError`, or nothing to do with ``missing_ok``. The pool's lock file goes
        with its last VM (a waiter then locks a new one: see :func:`file_lock`)."""
        with self.locked():
            with Host(self.uri) as host:
                nodes = members(host, self.name)
                if not nodes and not missing_ok:
                    lock_path(self.name).unlink(missing_ok=True)
                    raise ConfigError(f"no pool named {self.name!r}", hint="'vmctl pool ls' lists the pools")
                results = each(nodes, lambda m: m.down(), key=lambda m: m.name)
            _check(self.name, "deleting nodes", results)
            lock_path(self.name).unlink(missing_ok=True)
        return sorted(results)


def pools(uri: str | None) -> dict[str, list[str]]:
    """Pool name -> its node names."""
    with Host(uri) as host:
        out: dict[str, list[str]] = {}
        for m in host.list():
            if m.spec.pool:
                out.setdefault(m.spec.pool, []).append(m.name)
    return {k: sorted(v, key=lambda n: index_of(n, k)) for k, v in sorted(out.items())}

