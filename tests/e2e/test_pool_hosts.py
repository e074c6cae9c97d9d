"""One Swarm over two hypervisor hosts: this machine's runtime and a second one (see
:mod:`tests.e2e.hosts`), reached only through its ``qemu+ssh://`` URI, their namespaces
linked by a veth pair as their LAN (172.31.250.0/30); nothing else links them, and
neither to the outside.

A pool of 3 is placed by weight (node 2 on the second host), each host gets its /24 of
the pool's range and a route to the other's; the real docker CLI sees 3 Ready nodes; a
2-replica service on an overlay network runs on both hosts and its containers reach
each other across them. Then the second host goes down (sshd, daemons, guests and
namespace): its node turns Down, ``pool status`` names the host that does not answer,
and the service is rescheduled. The host comes back, and ``pool up`` converges; ``pool
scale`` places a fourth node by weight and shrinking takes it away again."""

from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

import vmctl as vmctl_api

from .conftest import BAKED_IMAGE, vmctl, vmctl_json
from .hosts import SecondHost, link

POOL = "e2eh"
LAN = ("172.31.250.1/30", "172.31.250.2/30")
SERVICE, OVERLAY = "across", "e2eh-net"


@pytest.fixture(scope="module")
def hosts(runtime: dict[str, Any], baked_image: dict[str, Any]) -> Iterator[dict[str, Any]]:
    second = SecondHost("h3")
    up: list[str] = []
    try:
        uri = second.start()
        link(runtime["netns"], second.namespace, *LAN)
        up = ["pool", "up", POOL, "--size", "3", "--image", BAKED_IMAGE, "--cpus", "1", "--hosts", f"local,{uri}"]
        yield {"uri": uri, "second": second, "up": up, "local_ns": runtime["netns"]}
    finally:
        if up:
            vmctl("pool", "down", POOL, check=False)
        second.close()


@pytest.fixture(scope="module")
def wide(hosts: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    status = vmctl_json(*hosts["up"], "--json")
    print(f"\npool of 3 over 2 hosts ready in {time.monotonic() - started:.0f}s")  # for docs/pools.md
    return dict(status)


def _docker(*args: str) -> str:
    """The real docker CLI on this machine, through node 1's forwarded Docker socket."""
    socket = vmctl("docker", "socket", f"{POOL}-1").stdout.strip()
    done = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": f"unix://{socket}"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _until(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(3)
    return found


def _node_states() -> dict[str, str]:
    rows = _docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").split("\n")
    return dict(row.split() for row in rows if row)


def test_three_nodes_over_two_hosts_are_ready_with_their_hosts(hosts: dict[str, Any], wide: dict[str, Any]) -> None:
    second = wide["hosts"][1]["host"]
    assert second.startswith("127.0.0.1:") and [h["reachable"] for h in wide["hosts"]] == [True, True]
    assert [(n["name"], n["host"], n["status"]) for n in wide["nodes"]] == [
        (f"{POOL}-1", "local", "ready"), (f"{POOL}-2", second, "ready"), (f"{POOL}-3", "local", "ready")]
    assert all(n["labels"]["vmctl.host"] == n["host"] for n in wide["nodes"])
    assert _node_states() == {f"{POOL}-1": "Ready", f"{POOL}-2": "Ready", f"{POOL}-3": "Ready"}
    with vmctl_api.connect() as here, vmctl_api.connect(hosts["uri"]) as there:
        assert sorted(m.name for m in here.list() if m.spec.pool == POOL) == [f"{POOL}-1", f"{POOL}-3"]
        assert [m.name for m in there.list()] == [f"{POOL}-2"]


def test_each_host_has_its_own_subnet_and_a_route_to_the_other(hosts: dict[str, Any], wide: dict[str, Any]) -> None:
    ips = {n["name"]: ipaddress.IPv4Address(n["ip"]) for n in wide["nodes"]}
    assert ips[f"{POOL}-1"] in ipaddress.IPv4Network("10.77.0.0/24")
    assert ips[f"{POOL}-3"] in ipaddress.IPv4Network("10.77.0.0/24")
    assert ips[f"{POOL}-2"] in ipaddress.IPv4Network("10.77.1.0/24")
    here = subprocess.run(["ip", "-n", hosts["local_ns"], "route", "show", "10.77.1.0/24"], capture_output=True,
                          text=True, check=True).stdout
    there = subprocess.run(["ip", "-n", hosts["second"].namespace, "route", "show", "10.77.0.0/24"],
                           capture_output=True, text=True, check=True).stdout
    assert "via 172.31.250.2" in here and "via 172.31.250.1" in there
    # the guests themselves: node 2 reaches node 1 across the hosts, on Swarm's port
    manager = ips[f"{POOL}-1"]
    out = vmctl("--connect", hosts["uri"], "ssh", f"{POOL}-2", "--",
                f"timeout 5 bash -c '</dev/tcp/{manager}/2377' && echo open")
    assert out.stdout.strip() == "open"


def _tasks() -> dict[str, str]:
    """The service's running tasks: task ID -> node."""
    out = _docker("service", "ps", SERVICE, "--filter", "desired-state=running", "--format",
                  "{{.ID}} {{.Node}} {{.CurrentState}}")
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if " Running" in line}


@pytest.fixture(scope="module")
def service(wide: dict[str, Any]) -> dict[str, str]:
    """2 replicas on an overlay network, spread over the hosts (one task on each)."""
    _docker("network", "create", "--driver", "overlay", "--attachable", OVERLAY)
    _docker("service", "create", "--detach", "--no-resolve-image", "--name", SERVICE, "--replicas", "2",
            "--replicas-max-per-node", "1", "--placement-pref", "spread=node.labels.vmctl.host",
            "--network", OVERLAY, "vmctl/busybox:latest", "busybox", "httpd", "-f", "-p", "8080", "-h", "/etc")
    return dict(_until(lambda: len(t := _tasks()) == 2 and t, 300, "two running tasks"))


def _task_ip(task: str) -> str:
    raw = _docker("inspect", task, "--format", "{{range .NetworksAttachments}}{{.Network.Spec.Name}}="
                  "{{range .Addresses}}{{.}}{{end}} {{end}}")
    address = dict(pair.split("=") for pair in raw.split())[OVERLAY]
    return address.split("/")[0]


def _from_task(connect: list[str], node: str, address: str) -> tuple[str, str]:
    """In the network namespace of the service's task on ``node`` (``nsenter``, the guest's
    bash: the busybox image has no /dev/tcp), fetch /hostname from ``address``'s httpd.
    Returns this task's container ID and what came back."""
    task = f"docker ps -q --filter label=com.docker.swarm.service.name={SERVICE}"
    request = f"exec 3<>/dev/tcp/{address}/8080; printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"
    script = (f"id=$({task}); pid=$(docker inspect -f '{{{{.State.Pid}}}}' $id); echo $id; "
              f"sudo timeout 20 nsenter -t $pid -n bash -c {shlex.quote(request)}")
    out = vmctl(*connect, "ssh", node, "--", script).stdout.strip().splitlines()
    return out[0], out[-1].strip()


def test_a_service_on_an_overlay_network_spans_both_hosts_and_its_tasks_talk(
    hosts: dict[str, Any], service: dict[str, str]
) -> None:
    nodes = sorted(service.values())
    assert f"{POOL}-2" in nodes and len(set(nodes)) == 2, service  # one on each host
    remote_task = next(t for t, n in service.items() if n == f"{POOL}-2")
    local_task, local_node = next((t, n) for t, n in service.items() if n != f"{POOL}-2")
    # each task fetches the other's container hostname, by its overlay address, across the hosts
    here, fetched = _from_task([], local_node, _task_ip(remote_task))
    there, back = _from_task(["--connect", hosts["uri"]], f"{POOL}-2", _task_ip(local_task))
    assert (fetched, back) == (there[:12], here[:12])


def test_a_host_going_down_turns_its_node_down_and_the_service_moves(
    hosts: dict[str, Any], service: dict[str, str]
) -> None:
    hosts["second"].stop()
    _until(lambda: _node_states().get(f"{POOL}-2") == "Down", 180, "node 2 Down")
    status = vmctl_json("pool", "status", POOL)
    gone = status["hosts"][1]
    assert not gone["reachable"] and gone["error"], gone
    node2 = next(n for n in status["nodes"] if n["name"] == f"{POOL}-2")
    assert (node2["vm_state"], node2["status"], node2["host"]) == ("unknown", "down", gone["host"])
    text = vmctl("pool", "status", POOL).stdout
    assert f"host {gone['host']} is unreachable:" in text
    moved = _until(lambda: sorted((t := _tasks()).values()) == [f"{POOL}-1", f"{POOL}-3"] and t, 300,
                   "the task rescheduled on this host's nodes")
    assert len(moved) == 2


def test_the_host_back_and_pool_up_converges(hosts: dict[str, Any], wide: dict[str, Any]) -> None:
    second: SecondHost = hosts["second"]
    if second.sshd is None:  # (the test before took it down)
        second.start()
        link(hosts["local_ns"], second.namespace, *LAN)
    started = time.monotonic()
    status = vmctl_json(*hosts["up"], "--json")
    print(f"\npool up converged in {time.monotonic() - started:.0f}s after the host came back")
    assert [(n["name"], n["status"], n["vm_state"]) for n in status["nodes"]] == [
        (f"{POOL}-1", "ready", "running"), (f"{POOL}-2", "ready", "running"), (f"{POOL}-3", "ready", "running")]
    assert _until(lambda: set(_node_states().values()) == {"Ready"}, 120, "3 Ready")


def test_scale_places_the_new_node_by_weight_and_shrinking_keeps_the_spread(
    hosts: dict[str, Any], wide: dict[str, Any]
) -> None:
    second: SecondHost = hosts["second"]
    if second.sshd is None:
        second.start()
        link(hosts["local_ns"], second.namespace, *LAN)
    grown = vmctl_json("pool", "scale", POOL, "--size", "4")
    placed = {n["name"]: n["host"] for n in grown["nodes"]}
    assert placed[f"{POOL}-4"] == placed[f"{POOL}-2"] != "local"  # 2 and 2: the second host was below its share
    assert [n["status"] for n in grown["nodes"]] == ["ready"] * 4
    shrunk = vmctl_json("pool", "scale", POOL, "--size", "3")
    assert [(n["name"], n["host"]) for n in shrunk["nodes"]] == [
        (f"{POOL}-1", "local"), (f"{POOL}-2", placed[f"{POOL}-2"]), (f"{POOL}-3", "local")]
    with vmctl_api.connect(hosts["uri"]) as there:
        assert [m.name for m in there.list()] == [f"{POOL}-2"]


def test_pool_down_removes_the_nodes_networks_and_routes_on_both_hosts(
    hosts: dict[str, Any], wide: dict[str, Any]
) -> None:
    vmctl("pool", "down", POOL)
    for uri in (None, hosts["uri"]):
        with vmctl_api.connect(uri) as host:
            assert not [m for m in host.list() if m.spec.pool == POOL]
            assert "pool-" + POOL not in [n.name for n in host.hv.networks()]
    routes = subprocess.run(["ip", "-n", hosts["local_ns"], "route"], capture_output=True, text=True).stdout
    assert "10.77." not in routes


@pytest.mark.parametrize(("hosts_arg", "extra", "message"), [
    ("local,qemu+ssh://root@127.0.0.1:1/system?no_tty=1=0", [], "invalid weight 0 for host"),
    ("local,qemu+ssh://root@127.0.0.1:1/system?no_tty=1", [], "host 127.0.0.1:1 is unreachable"),
    ("local", ["--range", "192.168.150.0/23"], "pool range 192.168.150.0/23 overlaps network vmctl on local"),
])
def test_bad_hosts_are_one_line_errors_before_anything_is_made(
    runtime: dict[str, Any], hosts_arg: str, extra: list[str], message: str
) -> None:
    done = vmctl("pool", "up", "e2ebad", "--size", "2", "--hosts", hosts_arg, *extra, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode == 1 and len(errors) == 1 and message in errors[0], done.stderr
    with vmctl_api.connect() as host:
        assert not [m for m in host.list() if m.spec.pool == "e2ebad"]
        assert "pool-e2ebad" not in [n.name for n in host.hv.networks()]
