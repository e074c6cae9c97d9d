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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from .._core.locks import file_lock
from .._core.paths import machines_dir
from .._core.progress import Labelled, NoProgress, Progress, Serialized
from ..engine.install import install
from ..errors import ConfigError, HypervisorError, NoAddress, PoolError, VmctlError
from ..images.catalog import Cache
from ..machines.host import Host
from ..machines.machine import Machine
from ..model.placement import DEFAULT_RANGE, LOCAL, PoolHost, check_pool_range, host_subnets, label, parse_hosts, place
from ..model.spec import MachineSpec, check_name, check_range
from . import network
from . import ops as swarm

T = TypeVar("T")
LABEL_POOL, LABEL_VM, LABEL_HOST = "vmctl.pool", "vmctl.vm", "vmctl.host"


@dataclass(frozen=True)
class PoolSpec:
    name: str
    size: int = 2
    managers: int = 1
    image: str = "debian-12"
    cpus: int = 2
    memory_mib: int = 1024
    # several hypervisors (URI[=WEIGHT] strings are parsed); none: the one vmctl connects to
    hosts: tuple[PoolHost, ...] = ()
    cidr: str = ""  # the network range of a pool over hosts (DEFAULT_RANGE when hosts are given)

    def __post_init__(self) -> None:
        check_name(self.name, "pool name")
        if len(self.name) > 56:
            raise ConfigError(f"pool name {self.name!r} is too long: at most 56 characters (nodes are NAME-N)")
        check_range(self.size, 1, 32, "pool size")
        check_range(self.managers, 1, 7, "managers")
        if self.managers > self.size:
            raise ConfigError(f"managers ({self.managers}) cannot exceed the pool size ({self.size})")
        hosts = parse_hosts(list(self.hosts))  # (a plan file's or --hosts' strings, or PoolHosts)
        object.__setattr__(self, "hosts", hosts)
        if self.cidr and not hosts:
            raise ConfigError("a network range is for a pool over several hosts", hint="give --hosts too, or drop it")
        if hosts:
            object.__setattr__(self, "cidr", str(check_pool_range(self.cidr or DEFAULT_RANGE, len(hosts))))

    @property
    def where(self) -> list[str]:
        """The hosts, as its nodes' records name them: ``[""]`` for a pool on one host."""
        return [h.uri for h in self.hosts] or [""]

    def node(self, index: int, where: str = "") -> MachineSpec:
        """A node: a Docker host (so it gets a forwarded Docker socket) that belongs to the pool;
        on a pool over hosts, placed on ``where``, on the pool's network there."""
        spread = {} if not self.hosts else {
            "hypervisor": where, "pool_hosts": tuple(map(str, self.hosts)), "pool_range": self.cidr,
            "network": network.network_name(self.name)}
        return MachineSpec(f"{self.name}-{index}", image=self.image, cpus=self.cpus,
                           memory_mib=self.memory_mib, pool=self.name, docker=True, **spread)  # type: ignore[arg-type]

    @classmethod
    def of(cls, node: MachineSpec, size: int, managers: int) -> PoolSpec:
        """The spec of the pool ``node`` was made for, at ``size`` and ``managers``."""
        return cls(node.pool, size, min(managers, size), node.image, node.cpus, node.memory_mib,
                   tuple(PoolHost.parse(h) for h in node.pool_hosts), node.pool_range)


@dataclass
class PoolStatus:
    name: str
    nodes: list[dict[str, object]] = field(default_factory=list)

    hosts: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "size": len(self.nodes), "nodes": self.nodes, "hosts": self.hosts}


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
    """A pool: nodes ``NAME-1``, ``NAME-2``...; the first ``managers`` are managers. On one
    host (the one vmctl connects to), or over several (:attr:`PoolSpec.hosts`), where each
    node's record names its host and the pool's hosts, so every command after ``up``
    finds them from the nodes on the host vmctl connects to."""

    def __init__(self, uri: str | None, name: str, progress: Progress = NoProgress()) -> None:
        # nodes are made in parallel threads, each reporting here
        self.uri, self.name, self.progress = uri, check_name(name, "pool name"), Serialized(progress)

    def _phase(self, text: str) -> None:
        self.progress.phase(text)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the pool's lock: one ``up``, ``scale`` or ``down`` of it at a time, on this client."""
        with file_lock(lock_path(self.name), what=f"pool {self.name}", progress=self.progress):
            yield

    # hosts ------------------------------------------------------------------

    def _uri(self, where: str) -> str | None:
        """The URI to connect to for a host as the pool names it (``local``: vmctl's own)."""
        return self.uri if where in ("", LOCAL) else where

    @contextmanager
    def _open(self, wheres: Iterable[str]) -> Iterator[tuple[dict[str, Host], dict[str, str]]]:
        """Each host open; those that cannot be reached map to why."""
        with ExitStack() as stack:
            hosts, down = {}, {}
            for where in dict.fromkeys(wheres):
                try:
                    hosts[where] = stack.enter_context(Host(self._uri(where)))
                except VmctlError as e:
                    down[where] = e.message
            yield hosts, down

    def _recorded(self) -> PoolSpec | None:
        """The existing pool, as its nodes on the host vmctl connects to recorded it (their
        size and managers aside); None if it has no node there. A pool over hosts whose
        nodes here were placed as another host's (vmctl connects elsewhere than when it
        made the pool, where ``local`` meant another host) is refused: acting on it from
        here would reach only part of it."""
        with Host(self.uri) as host:
            nodes = members(host, self.name)
        if not nodes:
            return None
        node = nodes[0].spec
        if node.pool_hosts and node.hypervisor != LOCAL:
            raise ConfigError(f"pool {self.name} was made from another host: its node {node.name} here was "
                              f"placed on {label(node.hypervisor)}",
                              hint="run vmctl where the pool was made, or --connect to the host it called local")
        return PoolSpec.of(node, 1, 1)

    def _where(self) -> list[str]:
        """The existing pool's hosts, from its nodes' records on the host vmctl connects to."""
        recorded = self._recorded()
        return recorded.where if recorded else [""]

    def _members(self, hosts: dict[str, Host]) -> list[Machine]:
        """The pool's VMs on ``hosts``, by node index (on a host listed twice, under two
        names, each node counts once: where its record says it was placed)."""
        found = [m for where, host in hosts.items() for m in members(host, self.name)
                 if m.spec.hypervisor == where or where == ""]
        return sorted(found, key=lambda m: index_of(m.name, self.name))

    def _reachable(self, wheres: list[str], down: dict[str, str]) -> None:
        if down:
            where, why = next(iter(down.items()))
            raise HypervisorError(f"pool {self.name}: host {label(where)} is unreachable: {why}",
                                  hint="start it (or its libvirtd and sshd), then run this again")

    # nodes ------------------------------------------------------------------

    def _node(self, host: Host, name: str) -> Machine:
        """The existing VM ``name``, refused unless it was made as a node of this pool."""
        machine = host.get(name)
        if machine.spec.pool != self.name:
            raise ConfigError(
                f"VM {name} exists but is not a node of pool {self.name}",
                hint=f"remove it ('vmctl down {name}') or choose another pool name; a pool never adopts a VM",
            )
        return machine

    def _provision(self, spec: MachineSpec) -> str:
        progress = Labelled(self.progress, spec.name)
        with Host(self._uri(spec.hypervisor)) as host:
            if host.hv.exists(spec.name):  # an existing node keeps the spec it was made with
                machine = self._node(host, spec.name)
                if machine.missing_phases:  # a pool up or scale was interrupted while making it
                    machine = host.up(machine.spec, progress=progress)
                elif machine.state != "running":
                    self._phase(f"{spec.name}: starting")
                    machine.start()
            else:
                self._phase(f"{spec.name}: creating" + (f" on {label(spec.hypervisor)}" if spec.hypervisor else ""))
                machine = host.up(spec, progress=progress)
            self._phase(f"{spec.name}: Docker")
            install(machine, live_restore=False)  # live-restore is incompatible with swarm mode
            machine.close()
            return machine.name

    def up(self, spec: PoolSpec) -> PoolStatus:
        """Create what is missing (network, VMs, Docker, swarm membership, labels) up to ``spec.size``.

        Before anything is made: every host must answer, the image must be cached here,
        a VM named like a node must be a node of this pool (:class:`ConfigError`), and on
        a pool over hosts the range must overlap nothing on any of them."""
        if spec.name != self.name:
            raise ConfigError(f"pool {self.name}: the spec is for pool {spec.name}")
        with self.locked():
            return self._up(spec)

    def _up(self, spec: PoolSpec) -> PoolStatus:
        cache = Cache()
        spec = replace(spec, image=docker_image(spec.image, cache))
        if cache.get(spec.image) is None:
            raise ConfigError(f"image {spec.image!r} is not in the cache here, so no host can be given it",
                              hint=f"'vmctl image pull {spec.image}' or 'vmctl image build {spec.image}'")
        spec = self._as_recorded(spec)
        with self._open(spec.where) as (hosts, down):
            self._reachable(spec.where, down)
            existing = {index_of(m.name, self.name): m.spec.hypervisor for m in self._members(hosts)}
            placement = (place(spec.size, spec.managers, spec.hosts, existing) if spec.hosts
                         else dict.fromkeys(range(1, spec.size + 1), ""))
            wanted = [spec.node(i, where) for i, where in placement.items()]
            for node in wanted:  # never adopt a stranger
                if hosts[node.hypervisor].hv.exists(node.name):
                    self._node(hosts[node.hypervisor], node.name)
            if spec.hosts:
                self._phase(f"checking {len(hosts)} hosts: addresses, networks, accelerators")
                surveys = {where: network.survey(host) for where, host in hosts.items()}
                net = network.plan(self.name, spec.hosts, spec.cidr, surveys)
                for host in hosts.values():  # a probe that fails does so before anything is made
                    host.accelerator(self.progress)
                self._phase("making the pool's network and routes")
                network.prepare(self.name, hosts, net)
        try:
            results = each(wanted, self._provision, key=lambda s: s.name)
            _check(self.name, "creating nodes", results)
        except VmctlError:
            if spec.hosts and not existing:
                self._unmake_network(spec)
            raise
        self._join(spec.managers, spec.where)
        created = sorted(set(results) - {f"{self.name}-{i}" for i in existing})
        self._phase(f"ready ({len(created)} node(s) created)")
        return self.status()

    def _as_recorded(self, spec: PoolSpec) -> PoolSpec:
        """``spec`` with the existing pool's hosts and range when it gives none; a
        :class:`ConfigError` when it gives others (nodes never move between hosts)."""
        recorded = self._recorded()
        if recorded is None:
            return spec
        if not spec.hosts and not spec.cidr:
            return replace(spec, hosts=recorded.hosts, cidr=recorded.cidr)
        if (spec.hosts, spec.cidr) != (recorded.hosts, recorded.cidr):
            was = ",".join(map(str, recorded.hosts)) or "this host alone"
            was += f", range {recorded.cidr}" if recorded.cidr else ""
            raise ConfigError(f"pool {self.name} exists over {was}; the hosts or range asked for differ",
                              hint="leave --hosts and --range out (or give the same), "
                              f"or 'vmctl pool down {self.name}' first")
        return spec

    def _unmake_network(self, spec: PoolSpec) -> None:
        """After a first ``up`` that made no node: the networks and routes it made go too."""
        with self._open(spec.where) as (hosts, _):
            if not self._members(hosts):
                self._remove_network(spec, hosts)

    def _remove_network(self, spec: PoolSpec, hosts: dict[str, Host]) -> None:
        """The pool's network and routes, off each of ``hosts``."""
        network.teardown(self.name, hosts, host_subnets(spec.cidr, spec.hosts))

    def join(self, managers: int) -> None:
        """Initialise the swarm on node 1 and join every other node, as manager or worker."""
        with self.locked():
            self._join(managers, self._where())

    def _join(self, managers: int, wheres: list[str]) -> None:
        with self._open(wheres) as (hosts, down):
            self._reachable(wheres, down)
            nodes = self._members(hosts)
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
            placed = {n.name: n.spec.hypervisor for n in nodes}
            for node in ready:
                if node.hostname in placed:
                    labels = {LABEL_POOL: self.name, LABEL_VM: node.hostname}
                    if placed[node.hostname]:
                        labels[LABEL_HOST] = label(placed[node.hostname])
                    swarm.label(first, node.id, labels)
            first.close()

    @staticmethod
    def _ip(machine: Machine) -> str:
        ip = machine.ip
        if ip is None:
            raise NoAddress(machine.name, machine.state)
        return ip

    def names(self) -> list[str]:
        """The pool's nodes on every host of it that answers, by index."""
        with self._open(self._where()) as (hosts, _):
            return [m.name for m in self._members(hosts)]

    @contextmanager
    def reachable_manager(self) -> Iterator[Machine]:
        """A reachable manager of the pool, on whichever of its hosts answers."""
        with self._open(self._where()) as (hosts, _):
            manager = self.manager(self._members(hosts))
            try:
                yield manager
            finally:
                manager.close()

    def manager(self, nodes: list[Machine]) -> Machine:
        """A reachable manager among ``nodes``."""
        errors = []
        for node in nodes:
            try:
                if node.state == "running" and swarm.state(node)[2]:
                    return node
            except VmctlError as e:
                errors.append(f"{node.name}: {e.message}")
        raise VmctlError(f"pool {self.name!r} has no reachable manager" + (f" ({'; '.join(errors)})" if errors else ""),
                         hint=f"'vmctl pool status {self.name}'")

    def status(self) -> PoolStatus:
        """Every node: its host, VM state and Swarm view. A host that cannot be reached is
        listed with why, and its nodes as the swarm sees them (their VM state unknown)."""
        wheres = self._where()
        with self._open(wheres) as (hosts, down):
            nodes = self._members(hosts)
            if not nodes:
                raise ConfigError(f"no pool named {self.name!r}", hint="'vmctl pool ls' lists the pools")
            try:
                manager = self.manager(nodes)
                swarm_nodes = {n.hostname: n for n in swarm.nodes(manager)}
                manager.close()
            except VmctlError:
                swarm_nodes = {}
            rows = {m.name: self._row(m.name, m.spec.hypervisor, m.state, m.ip, swarm_nodes.get(m.name))
                    for m in nodes}
            for name, n in swarm_nodes.items():  # on a host that did not answer: as the swarm sees it
                if name not in rows and n.labels.get(LABEL_POOL) == self.name:
                    rows[name] = self._row(name, n.labels.get(LABEL_HOST, "unknown"), "unknown", None, n)
            out = sorted(rows.values(), key=lambda r: index_of(str(r["name"]), self.name))
            spread: list[dict[str, object]] = [
                {"host": label(w), "uri": w, "reachable": w not in down, "error": down.get(w)} for w in wheres if w]
            return PoolStatus(self.name, out, spread)

    @staticmethod
    def _row(name: str, where: str, vm_state: str, ip: str | None, n: swarm.Node | None) -> dict[str, object]:
        return {"name": name, "host": label(where), "vm_state": vm_state, "ip": ip,
                "role": n.role if n else None, "manager_status": n.manager_status if n else None,
                "availability": n.availability if n else None, "reachable": bool(n and n.status == "ready"),
                "status": n.status if n else "not in swarm", "engine": n.engine if n else None,
                "labels": n.labels if n else {}}

    def scale(self, size: int, managers: int | None = None) -> PoolStatus:
        """Grow (create and join, placed by weight) or shrink (drain, leave, delete) to ``size`` nodes."""
        check_range(size, 1, 32, "pool size")
        with self.locked():
            return self._scale(size, managers)

    def _scale(self, size: int, managers: int | None) -> PoolStatus:
        wheres = self._where()
        with self._open(wheres) as (hosts, down):
            nodes = self._members(hosts)
            if not nodes:
                lock_path(self.name).unlink(missing_ok=True)  # no pool: leave no lock file of it either
                raise ConfigError(f"no pool named {self.name!r}", hint="'vmctl pool ls' lists the pools")
            self._reachable(wheres, down)
            manager = self.manager(nodes)
            current = swarm.nodes(manager)
            managers = managers or sum(1 for n in current if n.role == "manager") or 1
            if size >= len(nodes):
                manager.close()
                return self._up(PoolSpec.of(nodes[0].spec, size, managers))
            # the highest-numbered workers go: placement is by index, so what is left is spread
            # as a pool made at this size would be
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
        """Destroy every VM of the pool, and on a pool over hosts its network and routes on
        each; returns the VMs' names. A pool with no VMs is a :class:`ConfigError`, or
        nothing to do with ``missing_ok``. A host that cannot be reached is an error once
        everything on the others is gone. The pool's lock file goes with its last VM (a
        waiter then locks a new one: see :func:`file_lock`)."""
        with self.locked():
            recorded = self._recorded()
            wheres = recorded.where if recorded else [""]
            with self._open(wheres) as (hosts, down):
                nodes = self._members(hosts)
                if not nodes and not missing_ok and not down:
                    lock_path(self.name).unlink(missing_ok=True)
                    raise ConfigError(f"no pool named {self.name!r}", hint="'vmctl pool ls' lists the pools")
                results = each(nodes, lambda m: m.down(), key=lambda m: m.name)
                if recorded is not None and recorded.hosts:
                    self._remove_network(recorded, hosts)
            _check(self.name, "deleting nodes", results)
            self._reachable(wheres, down)
            lock_path(self.name).unlink(missing_ok=True)
        return sorted(results)


def pools(uri: str | None) -> dict[str, list[str]]:
    """Pool name -> its node names (on every host of a pool over several that answers; of a
    pool made from another host, those here)."""
    with Host(uri) as host:
        here: dict[str, list[str]] = {}
        for m in host.list():
            if m.spec.pool:
                here.setdefault(m.spec.pool, []).append(m.name)
    out = {}
    for name in sorted(here):
        try:
            out[name] = Pool(uri, name).names()
        except ConfigError:  # made from another host: what is here is all this host can say
            out[name] = sorted(here[name], key=lambda n: index_of(n, name))
    return out
