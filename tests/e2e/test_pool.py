"""A Docker Swarm pool, for real: 2 nodes from the baked Docker image, a
2-replica service spread over them, scaling to 3 and back to 2, a plan file
applied twice and destroyed, and nothing left after `pool down`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmctl

from .conftest import BAKED_IMAGE, VMCTL, killed_at, traces, vmctl_json
from .conftest import vmctl as run_vmctl

POOL = "e2ep"


UP = ["pool", "up", POOL, "--size", "2", "--managers", "1", "--image", BAKED_IMAGE, "--cpus", "1"]


@pytest.fixture(scope="module")
def pool(baked_image: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pool, made the hard way: the first ``pool up`` is SIGKILLed while its
    nodes wait for SSH, and the second converges (the nodes' ups resume)."""
    started = time.monotonic()
    try:
        killed = killed_at(UP, "waiting for SSH", 2.0)
        incomplete = [row for row in vmctl_json("ls") if row["name"].startswith(f"{POOL}-")]
        status = vmctl_json(*UP)
        print(f"\npool of 2 ready in {time.monotonic() - started:.0f}s (its first pool up killed)")
        yield {**status, "killed": killed, "after_kill": incomplete}
    finally:
        run_vmctl("pool", "down", POOL, check=False)


@pytest.fixture
def live_pool(pool: dict[str, Any]) -> dict[str, Any]:
    """The pool's status now, made again if a test took it down (``pool up`` converges):
    a test run alone, or after ``pool down``, still finds the pool of 2."""
    if run_vmctl("pool", "status", POOL, check=False).returncode != 0:
        return dict(vmctl_json(*UP))
    return dict(vmctl_json("pool", "status", POOL))


@pytest.fixture
def sleeper(live_pool: dict[str, Any]) -> str:
    """A 2-replica service of the pool, at most one task per node (made if missing)."""
    if run_vmctl("ssh", f"{POOL}-1", "--", "docker service inspect sleeper", check=False).returncode != 0:
        _manager("docker service create --detach --no-resolve-image --name sleeper --replicas 2 "
                 "--replicas-max-per-node 1 vmctl/busybox:latest sleep 3600")
    return "sleeper"


def test_a_pool_up_killed_midway_converges_on_the_next(pool: dict[str, Any]) -> None:
    assert pool["after_kill"] and all(row["complete"] is False for row in pool["after_kill"]), pool["after_kill"]
    assert [n["name"] for n in pool["nodes"]] == [f"{POOL}-1", f"{POOL}-2"]
    assert all(n["status"] == "ready" for n in pool["nodes"])


def _manager(*args: str) -> str:
    return run_vmctl("ssh", f"{POOL}-1", "--", *args).stdout


def test_both_nodes_are_ready_with_roles_and_labels(live_pool: dict[str, Any]) -> None:
    nodes = {n["name"]: n for n in live_pool["nodes"]}
    assert set(nodes) == {f"{POOL}-1", f"{POOL}-2"}
    assert all(n["status"] == "ready" and n["reachable"] and n["vm_state"] == "running" for n in nodes.values())
    assert nodes[f"{POOL}-1"]["role"] == "manager" and nodes[f"{POOL}-1"]["manager_status"] == "Leader"
    assert nodes[f"{POOL}-2"]["role"] == "worker"
    assert nodes[f"{POOL}-2"]["labels"] == {"vmctl.pool": POOL, "vmctl.vm": f"{POOL}-2"}
    listed = _manager("docker node ls --format '{{.Hostname}} {{.Status}}'").split("\n")
    assert sorted(line for line in listed if line) == [f"{POOL}-1 Ready", f"{POOL}-2 Ready"]


def _running_tasks(service: str) -> list[str]:
    out = _manager(
        f"docker service ps {service} --filter desired-state=running --format '{{{{.Node}}}} {{{{.CurrentState}}}}'"
    )
    return [line.split()[0] for line in out.splitlines() if " Running" in line]


def test_a_two_replica_service_runs_a_task_on_each_node(sleeper: str) -> None:
    deadline = time.monotonic() + 300
    while sorted(_running_tasks(sleeper)) != [f"{POOL}-1", f"{POOL}-2"]:
        assert time.monotonic() < deadline, _manager(f"docker service ps {sleeper}")
        time.sleep(3)


def test_scale_to_three_and_back_to_two(sleeper: str) -> None:
    """The first scale is killed while the new node boots; then two scales run at once:
    one grows the pool (resuming the node), the other waits on the pool's lock and finds it done."""
    started = time.monotonic()
    killed_at(["pool", "scale", POOL, "--size", "3"], "waiting for SSH", 1.0)
    both = [subprocess.Popen([*VMCTL, "pool", "scale", POOL, "--size", "3", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=1800) for p in both]
    assert [p.returncode for p in both] == [0, 0], outs
    print(f"\nscaled to 3 in {time.monotonic() - started:.0f}s (one scale killed, two at once)")
    for out, _ in outs:
        grown = json.loads(out)
        assert [n["name"] for n in grown["nodes"]] == [f"{POOL}-1", f"{POOL}-2", f"{POOL}-3"]
        assert all(n["status"] == "ready" for n in grown["nodes"])
    leaders = _manager("docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'").split()
    assert leaders.count("Leader") == 1 and len(_manager("docker node ls -q").split()) == 3  # one swarm
    shrunk = vmctl_json("pool", "scale", POOL, "--size", "2")
    assert [n["name"] for n in shrunk["nodes"]] == [f"{POOL}-1", f"{POOL}-2"]
    assert f"{POOL}-3" not in _manager("docker node ls --format '{{.Hostname}}'")
    with vmctl.connect() as host:
        assert f"{POOL}-3" not in list(host.hv.domains())
    deadline = time.monotonic() + 300
    while len(_running_tasks(sleeper)) != 2:
        assert time.monotonic() < deadline
        time.sleep(3)
    assert json.loads(run_vmctl("pool", "ls", "--json").stdout) == [
        {"name": POOL, "size": 2, "nodes": [f"{POOL}-1", f"{POOL}-2"]}
    ]
    env = run_vmctl("pool", "env", POOL).stdout
    assert f"DOCKER_HOST=ssh://vmctl-{POOL}-1" in env


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    path.write_text(
        "vms:\n"
        "  e2e-planvm:\n"
        f"    image: {BAKED_IMAGE}\n"
        "    cpus: 1\n"
        "    memory: 768\n"
        "    user_data: {write_files: [{path: /etc/planned, content: planned}]}\n"
        "pools:\n"
        f"  {POOL}:\n"
        "    size: 2\n"
        f"    image: {BAKED_IMAGE}\n"
        "    cpus: 1\n"
    )
    yield path
    run_vmctl("down", "e2e-planvm", check=False)  # (when the destroy test did not run)


def _actions(*args: str) -> dict[str, str]:
    return {o["name"]: o["action"] for o in json.loads(run_vmctl(*args, "--json").stdout)}


def test_plan_apply_then_reapply_changes_nothing(live_pool: dict[str, Any], plan: Path) -> None:
    assert _actions("apply", str(plan)) == {"e2e-planvm": "created", POOL: "unchanged"}
    assert run_vmctl("ssh", "e2e-planvm", "--", "cat /etc/planned").stdout.strip() == "planned"
    assert _actions("apply", str(plan)) == {"e2e-planvm": "unchanged", POOL: "unchanged"}


def test_destroy_removes_what_the_plan_declares(live_pool: dict[str, Any], plan: Path, tmp_path: Path) -> None:
    """The plan's VM (applied here if it is not there yet) is destroyed; a pool the plan
    declares that does not exist is reported absent. (The shared pool is left to pool down.)"""
    run_vmctl("apply", str(plan))
    other = tmp_path / "other.yaml"
    other.write_text(plan.read_text().replace(f"  {POOL}:", f"  {POOL}x:"))
    assert _actions("destroy", str(other)) == {"e2e-planvm": "destroyed", f"{POOL}x": "absent"}
    with vmctl.connect() as host:
        assert "e2e-planvm" not in list(host.hv.domains())
    assert [row["name"] for row in vmctl_json("pool", "ls")] == [POOL]  # not the pool it does not name


def test_pool_down_leaves_no_vm_disk_or_libvirt_object(live_pool: dict[str, Any]) -> None:
    nodes = [row["name"] for row in vmctl_json("ls") if row["name"].startswith(f"{POOL}-")]
    macs = {name: vmctl_json("inspect", name)["mac"] for name in nodes}
    run_vmctl("pool", "down", POOL)
    assert macs and all(traces(name, mac) == [] for name, mac in macs.items())  # no process, lease, mount
    with vmctl.connect() as host:
        assert not [n for n in host.hv.domains() if n.startswith(f"{POOL}-")]
    machines = Path(os.environ["VMCTL_STATE_DIR"]) / "machines"
    assert not [p for p in machines.glob(f"{POOL}-*") if p.suffix != ".lock"]
    done = run_vmctl("pool", "status", POOL, check=False)
    assert done.returncode == 1 and f"no pool named '{POOL}'" in done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vms:\n  web:\n    cpu: 2\n", "vms.web: unknown key 'cpu'"),
        ("vms:\n  web:\n    cpus: two\n", "vms.web.cpus: expected int, got 'two'"),
        ("pools:\n  p:\n    size: 2\n    managers: 3\n", "pools.p: managers (3) cannot exceed the pool size (2)"),
        ("nodes: {}\n", "unknown top-level key(s) nodes"),
        ("vms:\n  Bad_Name: {}\n", "vms.Bad_Name: invalid name 'Bad_Name'"),
        ("vms: [\n", "not valid YAML"),
    ],
)
def test_plan_errors_name_the_file_and_key(runtime: dict[str, Any], tmp_path: Path, text: str, message: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    done = run_vmctl("apply", str(plan), check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {plan}") and message in done.stderr, done.stderr
