"""Docker Swarm mode on vmctl machines: the commands, run over SSH as root.

A join token is a secret: whoever holds it joins the swarm. It never goes on a
command line (``ps`` in the guest and sudo's log would show it): :func:`join`
sends it to the guest's Engine API in a request body, read from stdin.
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import asdict, dataclass

from .._core.poll import Look, wait_for
from ..errors import SwarmError, WaitTimeout
from ..machines.machine import Machine

PORT = 2377
DOCKER_SOCKET = "/var/run/docker.sock"

# ``python3 -c ENGINE_POST SOCKET PATH TIMEOUT`` POSTs the JSON on its stdin to the Engine
# API at PATH: the standard library only (cloud-init needs python3, so every guest has it).
ENGINE_POST = """\
import http.client, json, socket, sys


class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(sys.argv[1])


engine = Engine("localhost", timeout=float(sys.argv[3]))
engine.request("POST", sys.argv[2], body=sys.stdin.buffer.read(), headers={"Content-Type": "application/json"})
reply = engine.getresponse()
text = reply.read().decode(errors="replace")
if reply.status >= 300:
    try:
        text = json.loads(text)["message"]
    except (ValueError, KeyError, TypeError):
        pass
    sys.exit(f"HTTP {reply.status}: {str(text).strip()}")
sys.stdout.write(text)
"""


@dataclass(frozen=True)
class Node:
    """One node as the managers see it (``docker node ls``)."""

    id: str
    hostname: str
    role: str  # manager or worker
    manager_status: str  # Leader, Reachable, Unreachable or ""
    availability: str  # active, pause, drain
    status: str  # ready, down, unknown
    engine: str
    labels: dict[str, str]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _docker(machine: Machine, args: list[str], timeout: float = 120) -> str:
    result = machine.run(["sudo", "docker", *args], timeout=timeout)
    if result.rc != 0:
        raise SwarmError(f"{machine.name}: docker {' '.join(args[:3])} failed: {result.tail()}")
    return result.stdout.strip()


def state(machine: Machine) -> tuple[str, str, bool]:
    """(LocalNodeState, NodeID, is a manager) of the engine on ``machine``."""
    fmt = "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}"
    parts = (_docker(machine, ["info", "--format", fmt]) + "  ").split(" ")
    return parts[0], parts[1], parts[2] == "true"


def init(manager: Machine, address: str) -> str:
    """Initialise Swarm mode on ``manager`` (unless it is already in one); returns its node ID."""
    local, node_id, _ = state(manager)
    if local == "active":
        return node_id
    _docker(manager, ["swarm", "init", "--advertise-addr", address, "--listen-addr", f"{address}:{PORT}"])
    return state(manager)[1]


def join_token(manager: Machine, role: str) -> str:
    return _docker(manager, ["swarm", "join-token", "-q", role])


def engine_post(machine: Machine, path: str, body: dict[str, object], timeout: float = 120) -> str:
    """POST ``body`` as JSON to the guest's Engine API at ``path``; the body goes through
    stdin, so a secret in it is on no command line. Returns the reply's body."""
    argv = ["sudo", "python3", "-c", ENGINE_POST, DOCKER_SOCKET, path, str(max(timeout - 10, 1))]
    result = machine.run(argv, timeout=timeout, stdin=json.dumps(body).encode())
    if result.rc != 0:
        raise SwarmError(f"{machine.name}: Docker Engine API POST {path} failed: {result.tail(1) or 'no output'}")
    return result.stdout


def join(machine: Machine, address: str, token: str, manager_address: str) -> str:
    """Join ``machine`` to the swarm (unless it already is in one); returns its node ID.

    ``docker swarm join --token`` would put the token in the guest's process list: the
    Engine API's ``POST /swarm/join`` takes it in the request body instead."""
    local, node_id, _ = state(machine)
    if local == "active":
        return node_id
    engine_post(machine, "/swarm/join", {
        "ListenAddr": f"0.0.0.0:{PORT}", "AdvertiseAddr": address,
        "RemoteAddrs": [f"{manager_address}:{PORT}"], "JoinToken": token,
    }, timeout=300)
    return state(machine)[1]


def label(manager: Machine, node_id: str, labels: dict[str, str]) -> None:
    args = ["node", "update"]
    for key, value in labels.items():
        args += ["--label-add", f"{key}={value}"]
    _docker(manager, [*args, node_id])


def nodes(manager: Machine) -> list[Node]:
    ids = _docker(manager, ["node", "ls", "-q"]).split()
    if not ids:
        return []
    raw = json.loads(_docker(manager, ["node", "inspect", *ids]))
    return [_node(n) for n in raw]


def _node(n: dict[str, object]) -> Node:
    spec, desc, status = (n.get(k) or {} for k in ("Spec", "Description", "Status"))
    manager = n.get("ManagerStatus") or {}
    assert isinstance(spec, dict) and isinstance(desc, dict) and isinstance(status, dict) and isinstance(manager, dict)
    leader = "Leader" if manager.get("Leader") else str(manager.get("Reachability", "")).capitalize()
    return Node(
        id=str(n.get("ID", "")), hostname=str(desc.get("Hostname", "")), role=str(spec.get("Role", "")),
        manager_status=leader, availability=str(spec.get("Availability", "")), status=str(status.get("State", "")),
        engine=str((desc.get("Engine") or {}).get("EngineVersion", "")), labels=dict(spec.get("Labels") or {}),
    )


def wait_ready(manager: Machine, hostnames: set[str], timeout: float = 300) -> list[Node]:
    """Wait until every node in ``hostnames`` is Ready; returns all nodes."""

    def all_ready(look: Look) -> list[Node] | None:
        current = nodes(manager)
        look.seen = ", ".join(f"{n.hostname}={n.status}" for n in current) or "no nodes"
        return current if hostnames <= {n.hostname for n in current if n.status == "ready"} else None

    return wait_for("Swarm nodes to be Ready", all_ready, timeout, interval=2, seen="no nodes")


def drain_and_remove(manager: Machine, machine: Machine, node_id: str, timeout: float = 300) -> None:
    """Drain the node (its tasks move elsewhere), make it leave, and remove it from the swarm."""
    _docker(manager, ["node", "update", "--availability", "drain", node_id])

    def drained(_: Look) -> bool:
        return not _docker(manager, ["node", "ps", "-q", "--filter", "desired-state=running", node_id])

    wait_for(f"tasks to leave {machine.name}", drained, timeout, interval=2, seen="tasks still running")
    if state(machine)[2]:
        _docker(manager, ["node", "demote", node_id])
    machine.run(["sudo", "docker", "swarm", "leave", "--force"], timeout=120)

    def left(look: Look) -> bool:
        look.seen = _status(manager, node_id) if machine.host.hv.exists(machine.name) else "down"
        return look.seen == "down"

    with suppress(WaitTimeout):  # the manager may not see it go: it is removed by force either way
        wait_for(f"{machine.name} to leave the swarm", left, 60, interval=2)
    _docker(manager, ["node", "rm", "--force", node_id])


def _status(manager: Machine, node_id: str) -> str:
    return _docker(manager, ["node", "inspect", "--format", "{{.Status.State}}", node_id])
