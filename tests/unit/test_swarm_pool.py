"""Pool operations against a fake host: a VM not made for the pool is refused before
anything is touched, up/scale/down hold the pool's lock, and pool names are checked
before any path or VM name is made from them."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmctl._core.locks import file_lock
from vmctl.errors import ConfigError, HypervisorError, NoSuchMachine, PoolError
from vmctl.model.spec import MachineSpec
from vmctl.swarm import network, ops
from vmctl.swarm import pool as pool_module
from vmctl.swarm.pool import Pool, PoolSpec, lock_path, members


class FakeVM:
    """What the pool uses of a Machine."""

    def __init__(self, world: World, spec: MachineSpec, state: str = "running") -> None:
        self.world, self.spec, self.name, self.state = world, spec, spec.name, state
        self.ip = f"10.0.0.{len(world.vms) + 1}"
        self.missing_phases: tuple[str, ...] = ()

    def start(self) -> float:
        self.world.event(f"start {self.name}")
        self.state = "running"
        return 0.0

    def close(self) -> None:
        pass

    def down(self) -> list[str]:
        self.world.event(f"delete {self.name}")
        del self.world.vms[self.name]
        return [f"domain {self.name}"]


class World:
    """The VMs on a fake host, and what was done to them, in order."""

    def __init__(self) -> None:
        self.vms: dict[str, FakeVM] = {}
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.held_while: list[bool] = []  # was the pool's lock held at each event?
        self.pool = "web"

    def add(self, name: str, pool: str = "", state: str = "running") -> None:
        self.vms[name] = FakeVM(self, MachineSpec(name, pool=pool, docker=bool(pool)), state)

    def event(self, text: str) -> None:
        with self.lock:
            self.events.append(text)
            self.held_while.append(held(lock_path(self.pool)))


class FakeHost:
    def __init__(self, world: World) -> None:
        self.world, self.hv = world, self

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def exists(self, name: str) -> bool:
        return name in self.world.vms

    def get(self, name: str) -> FakeVM:
        if name not in self.world.vms:
            raise NoSuchMachine(name, "test:///")
        return self.world.vms[name]

    def list(self) -> list[FakeVM]:
        return sorted(self.world.vms.values(), key=lambda m: m.name)

    def accelerator(self, progress: object = None) -> str:
        return "tcg"

    def up(self, spec: MachineSpec, progress: object = None) -> FakeVM:
        if (vm := self.world.vms.get(spec.name)) is not None:  # an interrupted node: up resumes it
            self.world.event(f"resume {spec.name}")
            vm.missing_phases = ()
            return vm
        self.world.event(f"create {spec.name}")
        self.world.vms[spec.name] = FakeVM(self.world, spec)
        return self.world.vms[spec.name]

    def delete(self, name: str) -> list[str]:
        self.world.event(f"delete {name}")
        return [f"domain {name}"] if self.world.vms.pop(name, None) else []

    def delete_unlocked(self, name: str) -> list[str]:
        self.world.event(f"delete {name} without its lock")
        return [f"domain {name}"] if self.world.vms.pop(name, None) else []


def held(path: Path) -> bool:
    """Whether some open file holds ``path``'s flock."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def world(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    """A fake host for vmctl.swarm.pool, with Swarm answered by fakes that record what they did."""
    found = World()
    monkeypatch.setattr(pool_module, "Host", lambda uri=None: FakeHost(found))
    monkeypatch.setattr(pool_module, "docker_image", lambda image, cache=None: image)
    monkeypatch.setattr(pool_module, "Cache", lambda: {"debian-12": "cached"})
    monkeypatch.setattr(pool_module, "install", lambda m, live_restore: found.event(f"docker on {m.name}"))
    swarm: dict[str, str] = {}

    def init(m: FakeVM, address: str) -> str:
        found.event(f"swarm init on {m.name}")
        swarm[m.name] = "manager"
        return m.name

    def join(m: FakeVM, address: str, token: str, manager: str) -> str:
        found.event(f"join {m.name}")
        swarm[m.name] = "worker"
        return m.name

    def nodes(manager: FakeVM) -> list[ops.Node]:
        return [ops.Node(n, n, role, "Leader" if role == "manager" else "", "active", "ready", "24", {})
                for n, role in swarm.items() if n in found.vms]

    monkeypatch.setattr(ops, "init", init)
    monkeypatch.setattr(ops, "join", join)
    monkeypatch.setattr(ops, "join_token", lambda m, role: f"SWMTKN-1-{role}")
    monkeypatch.setattr(ops, "state", lambda m: ("active", m.name, swarm.get(m.name) == "manager"))
    monkeypatch.setattr(ops, "nodes", nodes)
    monkeypatch.setattr(ops, "wait_ready", lambda m, names: nodes(m))
    monkeypatch.setattr(ops, "label", lambda m, node_id, labels: None)
    monkeypatch.setattr(ops, "drain_and_remove", lambda m, node, node_id: found.event(f"drain {node.name}"))
    return found


# a VM that is not a node -----------------------------------------------------------------


@pytest.mark.parametrize("stranger", ["web-1", "web-2"])
def test_a_vm_named_like_a_node_but_not_in_the_pool_is_refused_before_anything_is_touched(
    world: World, stranger: str
) -> None:
    world.add(stranger, pool="", state="shut off")  # made with a plain `vmctl up web-N`
    with pytest.raises(ConfigError) as e:
        Pool(None, "web").up(PoolSpec("web", size=3))
    assert e.value.message == f"VM {stranger} exists but is not a node of pool web"
    assert f"vmctl down {stranger}" in e.value.hint
    assert world.events == [] and world.vms[stranger].state == "shut off"


def test_a_node_of_another_pool_is_refused_too(world: World) -> None:
    world.add("web-1", pool="webby")
    with pytest.raises(ConfigError, match="VM web-1 exists but is not a node of pool web"):
        Pool(None, "web").up(PoolSpec("web", size=1))
    assert world.events == []


def test_the_pools_own_nodes_are_kept_and_the_missing_ones_made(world: World) -> None:
    world.add("web-1", pool="web", state="shut off")
    status = Pool(None, "web").up(PoolSpec("web", size=2))
    assert {"start web-1", "create web-2", "docker on web-1", "docker on web-2"} <= set(world.events)
    assert "swarm init on web-1" in world.events and "join web-2" in world.events
    assert [n["name"] for n in status.nodes] == ["web-1", "web-2"]


def test_a_node_an_interrupted_pool_up_left_incomplete_is_resumed_by_up(world: World) -> None:
    world.add("web-1", pool="web")
    world.vms["web-1"].missing_phases = ("ssh", "cloud_init")
    Pool(None, "web").up(PoolSpec("web", size=1))
    assert world.events[:2] == ["resume web-1", "docker on web-1"] and not world.vms["web-1"].missing_phases


def test_a_spec_for_another_pool_is_refused(world: World) -> None:
    with pytest.raises(ConfigError, match="the spec is for pool db"):
        Pool(None, "web").up(PoolSpec("db", size=1))
    assert world.events == []


# the pool's lock ----------------------------------------------------------------------------


def _in_swarm(world: World, size: int) -> None:
    """``size`` nodes of pool web, joined: web-1 the manager."""
    for i in range(1, size + 1):
        world.add(f"web-{i}", pool="web")
        if i == 1:
            ops.init(world.vms["web-1"], "10.0.0.1")  # type: ignore[arg-type]
        else:
            ops.join(world.vms[f"web-{i}"], "10.0.0.2", "t", "10.0.0.1")  # type: ignore[arg-type]
    world.events.clear()
    world.held_while.clear()


def _grow(world: World) -> Callable[[], Any]:
    _in_swarm(world, 1)
    return lambda: Pool(None, "web").scale(2)


def _shrink(world: World) -> Callable[[], Any]:
    _in_swarm(world, 2)
    return lambda: Pool(None, "web").scale(1)


def _down(world: World) -> Callable[[], Any]:
    world.add("web-1", pool="web")
    world.add("web-2", pool="web")
    return lambda: Pool(None, "web").down()


OPERATIONS: dict[str, Callable[[World], Callable[[], Any]]] = {
    "up": lambda world: lambda: Pool(None, "web").up(PoolSpec("web", size=2)),
    "scale up": _grow, "scale down": _shrink, "down": _down,
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_change_to_a_pool_waits_for_its_lock_and_holds_it(world: World, operation: str) -> None:
    action = OPERATIONS[operation](world)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            action()
        except BaseException as e:  # handed to the test
            failures.append(e)

    with file_lock(lock_path("web")):  # another vmctl is changing the pool
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        time.sleep(0.6)
        assert world.events == [], "the pool was changed while another process held its lock"
    thread.join(30)
    assert not thread.is_alive() and not failures, failures
    assert world.events and all(world.held_while), list(zip(world.events, world.held_while, strict=True))


def test_down_removes_the_pools_lock_file_with_its_last_vm(world: World) -> None:
    _in_swarm(world, 2)
    assert Pool(None, "web").down() == ["web-1", "web-2"] and world.vms == {}
    assert not lock_path("web").exists()


def test_a_pool_lock_is_no_vms_file(isolated: Path) -> None:
    assert lock_path("web").name == "web.pool.lock" and lock_path("web").parent == isolated / "state" / "machines"
    assert lock_path("pool-web") != lock_path("web").with_name("pool-web.lock")  # VM pool-web's lock


# pool names ---------------------------------------------------------------------------------


@pytest.fixture
def no_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(uri: str | None = None) -> None:
        raise AssertionError("a host was opened before the pool name was checked")

    monkeypatch.setattr(pool_module, "Host", refuse)
    yield


@pytest.mark.parametrize("name", ["../x", "a/b", "web\n", "Web", "", "-web", "web.pool"])
def test_every_pool_entry_point_checks_the_name_first(no_host: None, name: str) -> None:
    entry_points: list[Callable[[], object]] = [
        lambda: Pool(None, name), lambda: PoolSpec(name), lambda: lock_path(name),
        lambda: members(FakeHost(World()), name),  # type: ignore[arg-type]
    ]
    for entry in entry_points:
        with pytest.raises(ConfigError, match="invalid pool name"):
            entry()


# a pool over two hosts ------------------------------------------------------------------------

HOST_B = "qemu+ssh://root@host-b/system"


@pytest.fixture
def two_hosts(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, World]:
    """Two fake hosts: the local one (``world``) and host-b; a host named in ``down`` does not
    answer. The network steps are recorded, not run."""
    worlds = {"local": world, HOST_B: World()}
    down: set[str] = set()

    def open_host(uri: str | None = None) -> FakeHost:
        key = uri or "local"
        if key in down:
            raise HypervisorError(f"cannot connect to libvirt at {key}: ssh: connect refused")
        return FakeHost(worlds[key])

    monkeypatch.setattr(pool_module, "Host", open_host)
    monkeypatch.setattr(network, "survey", lambda host: network.Survey({}, ()))
    monkeypatch.setattr(network, "plan", lambda *a: network.NetworkPlan({}, []))
    monkeypatch.setattr(network, "prepare", lambda pool, hosts, plan: world.event(f"network on {len(hosts)} hosts"))
    monkeypatch.setattr(network, "teardown",
                        lambda pool, hosts, subnets: world.event(f"network removed from {len(hosts)} hosts") or [])
    in_swarm = ops.nodes  # the world fixture's fake, which sees only the local host's VMs

    def nodes(manager: FakeVM) -> list[ops.Node]:
        every = {**worlds["local"].vms, **worlds[HOST_B].vms}
        saved, world.vms = world.vms, every
        try:
            return in_swarm(manager)  # type: ignore[arg-type]
        finally:
            world.vms = saved

    monkeypatch.setattr(ops, "nodes", nodes)
    monkeypatch.setattr(ops, "wait_ready", lambda m, names: nodes(m))
    labels: dict[str, dict[str, str]] = {}
    monkeypatch.setattr(ops, "label", lambda m, node_id, new: labels.__setitem__(node_id, new))
    world.labels = labels  # type: ignore[attr-defined]
    world.down = down  # type: ignore[attr-defined]
    return worlds


def _spread(size: int = 3) -> PoolSpec:
    return PoolSpec("web", size, hosts=("local", HOST_B))  # type: ignore[arg-type]


def test_nodes_are_placed_by_weight_and_labelled_with_their_host(two_hosts: dict[str, World]) -> None:
    status = Pool(None, "web").up(_spread())
    local, b = two_hosts["local"], two_hosts[HOST_B]
    assert sorted(local.vms) == ["web-1", "web-3"] and sorted(b.vms) == ["web-2"]
    assert b.vms["web-2"].spec.hypervisor == HOST_B and b.vms["web-2"].spec.network == "pool-web"
    assert [(n["name"], n["host"]) for n in status.nodes] == [("web-1", "local"), ("web-2", "host-b"),
                                                              ("web-3", "local")]
    assert local.labels["web-2"] == {"vmctl.pool": "web", "vmctl.vm": "web-2",  # type: ignore[attr-defined]
                                     "vmctl.host": "host-b"}
    assert local.events[0] == "network on 2 hosts"  # before any node is made


def test_a_host_that_does_not_answer_stops_up_before_anything_is_made(two_hosts: dict[str, World]) -> None:
    two_hosts["local"].down.add(HOST_B)  # type: ignore[attr-defined]
    with pytest.raises(HypervisorError, match="pool web: host host-b is unreachable: cannot connect"):
        Pool(None, "web").up(_spread())
    assert two_hosts["local"].events == [] and two_hosts["local"].vms == {} == two_hosts[HOST_B].vms


def test_status_names_the_host_that_does_not_answer_and_its_nodes_as_the_swarm_sees_them(
    two_hosts: dict[str, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    Pool(None, "web").up(_spread())
    two_hosts["local"].down.add(HOST_B)  # type: ignore[attr-defined]
    seen = ops.nodes(two_hosts["local"].vms["web-1"])  # type: ignore[arg-type]
    gone = [ops.Node(n.id, n.hostname, n.role, n.manager_status, n.availability,
                     "down" if n.hostname == "web-2" else n.status, n.engine,
                     {"vmctl.pool": "web", "vmctl.host": "host-b"} if n.hostname == "web-2" else n.labels)
            for n in seen]
    monkeypatch.setattr(ops, "nodes", lambda manager: gone)
    status = Pool(None, "web").status()
    assert status.hosts == [{"host": "local", "uri": "local", "reachable": True, "error": None},
                            {"host": "host-b", "uri": HOST_B, "reachable": False,
                             "error": f"cannot connect to libvirt at {HOST_B}: ssh: connect refused"}]
    web2 = next(n for n in status.nodes if n["name"] == "web-2")
    assert (web2["host"], web2["vm_state"], web2["status"]) == ("host-b", "unknown", "down")
    assert [n["name"] for n in status.nodes] == ["web-1", "web-2", "web-3"]


def test_an_image_not_cached_here_stops_up_before_any_host_is_touched(
    two_hosts: dict[str, World], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_module, "Cache", dict)
    with pytest.raises(ConfigError, match="image 'debian-12' is not in the cache here, so no host can be given it"):
        Pool(None, "web").up(_spread())
    assert two_hosts["local"].events == [] and two_hosts["local"].vms == {} == two_hosts[HOST_B].vms


def test_up_again_without_hosts_keeps_the_pools_hosts_and_other_hosts_are_refused(two_hosts: dict[str, World]) -> None:
    Pool(None, "web").up(_spread())
    again = Pool(None, "web").up(PoolSpec("web", 3))  # as a plan without hosts: the recorded ones
    assert sorted(two_hosts[HOST_B].vms) == ["web-2"] and [n["host"] for n in again.nodes] == [
        "local", "host-b", "local"]
    with pytest.raises(ConfigError, match="pool web exists over local=1,qemu\\+ssh://root@host-b/system=1, "
                                          "range 10.77.0.0/16; the hosts or range asked for differ"):
        Pool(None, "web").up(PoolSpec("web", 3, hosts=("local", f"{HOST_B}=2")))  # type: ignore[arg-type]


def test_a_pool_made_from_another_host_is_refused_not_half_handled(two_hosts: dict[str, World],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    Pool(None, "web").up(_spread())
    opened = pool_module.Host
    monkeypatch.setattr(pool_module, "Host", lambda uri=None: opened(HOST_B if uri is None else uri))
    with pytest.raises(ConfigError, match="pool web was made from another host: its node web-2 here was placed on "
                                          "host-b"):
        Pool(None, "web").down()  # connected to host-b, where local would mean host-b
    assert pool_module.pools(None) == {"web": ["web-2"]}  # what is there, listed all the same
    assert sorted(two_hosts["local"].vms) == ["web-1", "web-3"] and list(two_hosts[HOST_B].vms) == ["web-2"]


def test_a_first_up_that_made_no_node_takes_its_network_away(two_hosts: dict[str, World],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(spec: MachineSpec, progress: object = None) -> FakeVM:
        raise ConfigError("disk full")

    monkeypatch.setattr(FakeHost, "up", lambda self, spec, progress=None: fail(spec))
    with pytest.raises(PoolError):
        Pool(None, "web").up(_spread())
    assert two_hosts["local"].events == ["network on 2 hosts", "network removed from 2 hosts"]


def test_down_deletes_the_nodes_on_every_host_and_the_pools_network(two_hosts: dict[str, World]) -> None:
    Pool(None, "web").up(_spread())
    assert Pool(None, "web").down() == ["web-1", "web-2", "web-3"]
    assert two_hosts["local"].vms == {} == two_hosts[HOST_B].vms
    assert two_hosts["local"].events[-1] == "network removed from 2 hosts" and not lock_path("web").exists()


def test_down_with_a_host_down_deletes_the_rest_and_then_names_that_host(two_hosts: dict[str, World]) -> None:
    Pool(None, "web").up(_spread())
    two_hosts["local"].down.add(HOST_B)  # type: ignore[attr-defined]
    with pytest.raises(HypervisorError, match="pool web: host host-b is unreachable"):
        Pool(None, "web").down()
    assert two_hosts["local"].vms == {} and list(two_hosts[HOST_B].vms) == ["web-2"]
