"""Pool result aggregation and plan validation: the pure parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmctl import plan as plan_module
from vmctl.errors import ConfigError, PoolError, VmctlError
from vmctl.model.spec import MachineSpec
from vmctl.plan import Plan, load, teardown
from vmctl.swarm import pool as pool_module
from vmctl.swarm.pool import PoolSpec, _check, each, index_of

from .test_swarm_pool import FakeHost, World


def test_each_returns_a_result_or_the_exception_per_node() -> None:
    def work(n: int) -> int:
        if n == 2:
            raise VmctlError("disk full")
        return n * 10

    results = each([1, 2, 3], work, key=lambda n: f"p-{n}")
    assert results["p-1"] == 10 and results["p-3"] == 30 and isinstance(results["p-2"], VmctlError)
    with pytest.raises(PoolError) as e:
        _check("p", "creating nodes", results)
    assert "failed on 1 of 3 node(s): p-2: disk full" in e.value.message
    assert e.value.results is results and list(e.value.failed) == ["p-2"]


def test_pool_spec_rules() -> None:
    assert PoolSpec("web", size=3).node(2).name == "web-2" and PoolSpec("web").node(1).pool == "web"
    with pytest.raises(ConfigError, match="cannot exceed"):
        PoolSpec("web", size=1, managers=2)
    with pytest.raises(ConfigError, match="pool size"):
        PoolSpec("web", size=0)
    assert index_of("web-12", "web") == 12 and index_of("webby-1", "web") == 0


def test_a_good_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("vms:\n  a:\n    cpus: 1\n    docker: true\n    user_data: {packages: [htop]}\n"
                    "    ports: ['8080:80', 5353:53/udp]\n"
                    "  quick:\n    profile: fast\n"
                    "pools:\n  p:\n    size: 3\n    managers: 1\n"
                    "  wide:\n    hosts: [local, 'qemu+ssh://root@b/system=2']\n    range: 10.88.0.0/16\n")
    loaded = load(plan)
    assert loaded.vms[0].name == "a" and loaded.vms[0].docker and "htop" in loaded.vms[0].user_data
    assert loaded.vms[0].profile == "" and loaded.vms[1].profile == "fast" and loaded.vms[1].boot == "kernel"
    assert loaded.pools[0].size == 3 and loaded.pools[0].hosts == ()
    assert [str(h) for h in loaded.pools[1].hosts] == ["local=1", "qemu+ssh://root@b/system=2"]
    assert loaded.pools[1].cidr == "10.88.0.0/16"
    assert loaded.vms[0].ports == ("127.0.0.1:5353:53/udp", "127.0.0.1:8080:80/tcp") and loaded.vms[1].ports == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vms:\n  web:\n    memory: 1.5\n", "vms.web.memory: expected int, got 1.5"),
        ("vms:\n  web:\n    docker: 1\n", "vms.web.docker: expected bool, got 1"),
        ("vms:\n  web:\n    ssh_keys: [nothere.pub]\n", "cannot read SSH key file"),
        ("vms:\n  web: [1]\n", "vms.web: expected a mapping of settings"),
        ("vms:\n  web:\n    profile: turbo\n", "vms.web: unknown profile 'turbo'"),
        ("vms:\n  web:\n    ports: '8080:80'\n", "vms.web.ports: expected list, got '8080:80'"),
        ("vms:\n  web:\n    ports: ['99999:80']\n", "vms.web: invalid port '99999:80'"),
        ("vms:\n  web:\n    ports: [2222:22]\n", "vms.web.ports: 133342 is not a string: quote each port"),
        ("pools: [a]\n", "pools: expected a mapping"),
        ("pools:\n  p:\n    hosts: [local, 'qemu+ssh://b/system=0']\n", "pools.p: invalid weight 0 for host"),
        ("pools:\n  p:\n    hosts: local\n", "pools.p.hosts: expected list, got 'local'"),
        ("pools:\n  p:\n    hosts: [local]\n    range: 10.0.0.0/25\n", "pools.p: pool range 10.0.0.0/25 has no"),
        ("{}\n", "declares no vms and no pools"),
        ("- a\n", "expected a mapping with 'vms'"),
    ],
)
def test_plan_errors(tmp_path: Path, text: str, message: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(plan)
    assert message in e.value.message and (str(plan) in e.value.message or "SSH key" in e.value.message)


def test_destroy_deletes_each_vm_under_its_lock_and_each_pool_under_the_pool_lock(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World()
    world.pool = "db"
    world.add("web")
    world.add("db-1", pool="db")
    world.add("db-2", pool="db")
    world.add("other")
    monkeypatch.setattr(plan_module, "Host", lambda uri=None: FakeHost(world))
    monkeypatch.setattr(pool_module, "Host", lambda uri=None: FakeHost(world))
    plan = Plan(isolated / "plan.yaml", (MachineSpec("web"), MachineSpec("gone")), (PoolSpec("db"), PoolSpec("cache")))
    outcomes = [(o.kind, o.name, o.action, o.detail) for o in teardown(plan)]
    assert outcomes == [("vm", "web", "destroyed", ""), ("vm", "gone", "absent", ""),
                        ("pool", "db", "destroyed", "2 nodes"), ("pool", "cache", "absent", "0 nodes")]
    assert "delete web" in world.events and not any("without its lock" in e for e in world.events)
    pool_deletes = [held for e, held in zip(world.events, world.held_while, strict=True) if e.startswith("delete db-")]
    assert len(pool_deletes) == 2 and all(pool_deletes)  # the pool's lock was held
    assert list(world.vms) == ["other"]


def test_destroy_reports_a_vm_it_could_not_delete_and_goes_on(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    world.add("b")

    class Refusing(FakeHost):
        def delete(self, name: str) -> list[str]:
            if name == "a":
                raise VmctlError("a is not a vmctl VM")
            return super().delete(name)

    monkeypatch.setattr(plan_module, "Host", lambda uri=None: Refusing(world))
    outcomes = teardown(Plan(isolated / "plan.yaml", (MachineSpec("a"), MachineSpec("b")), ()))
    assert [(o.name, o.action, o.detail) for o in outcomes] == [("a", "failed", "a is not a vmctl VM"),
                                                               ("b", "destroyed", "")]
