"""Swarm commands on a node, against a fake machine: a join token is never on a command
line nor in an error, and the Engine API script works against a real unix socket."""

from __future__ import annotations

import ast
import http.server
import json
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from vmctl._core.proc import CommandResult
from vmctl.errors import SwarmError
from vmctl.machines.machine import Machine
from vmctl.swarm import ops

TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
Reply = Callable[[list[str], bytes | None], CommandResult]


class FakeMachine:
    """What the ops use of a Machine: a name and ``run``; every call is kept."""

    def __init__(self, name: str, reply: Reply) -> None:
        self.name, self.reply = name, reply
        self.calls: list[tuple[list[str], bytes | None]] = []

    def run(self, command: str | Sequence[str], timeout: float = 600, stdin: bytes | None = None) -> CommandResult:
        argv = [command] if isinstance(command, str) else list(command)
        self.calls.append((argv, stdin))
        return self.reply(argv, stdin)


def ok(out: str = "") -> CommandResult:
    return CommandResult("...", 0, out, "")


def a_node_joining(state: list[str]) -> Reply:
    """A Docker Engine: ``info`` says inactive until the Engine API's /swarm/join is posted to."""
    def reply(argv: list[str], stdin: bytes | None) -> CommandResult:
        if argv[:3] == ["sudo", "docker", "info"]:
            return ok(state[0])
        if "python3" in argv and "/swarm/join" in argv:
            state[0] = "active node2 false"
            return ok()
        return CommandResult(" ".join(argv), 1, "", "unexpected command")
    return reply


def test_join_sends_the_token_on_stdin_to_the_engine_api_never_on_the_command_line() -> None:
    node = FakeMachine("web-2", a_node_joining(["inactive  false"]))
    assert ops.join(cast(Machine, node), "10.0.0.2", TOKEN, "10.0.0.1") == "node2"
    for argv, _ in node.calls:
        assert not any(TOKEN in arg for arg in argv), argv
    posted = [(argv, stdin) for argv, stdin in node.calls if "/swarm/join" in argv]
    assert len(posted) == 1 and posted[0][1] is not None
    assert json.loads(posted[0][1]) == {"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "10.0.0.2",
                                        "RemoteAddrs": ["10.0.0.1:2377"], "JoinToken": TOKEN}


def test_a_node_already_in_a_swarm_is_left_alone() -> None:
    node = FakeMachine("web-2", a_node_joining(["active node2 false"]))
    assert ops.join(cast(Machine, node), "10.0.0.2", TOKEN, "10.0.0.1") == "node2" and len(node.calls) == 1


def test_a_failed_join_never_shows_the_token() -> None:
    def reply(argv: list[str], stdin: bytes | None) -> CommandResult:
        if argv[:3] == ["sudo", "docker", "info"]:
            return ok("inactive  false")
        text = (stdin or b"").decode()
        return CommandResult(" ".join(argv), 1, "", f"HTTP 500: invalid join token in {text}")

    with pytest.raises(SwarmError) as e:
        ops.join(cast(Machine, FakeMachine("web-2", reply)), "10.0.0.2", TOKEN, "10.0.0.1")
    assert "web-2: Docker Engine API POST /swarm/join failed: HTTP 500" in e.value.message
    assert TOKEN not in f"{e.value} {e.value.hint} {e.value.args}"


def test_a_failed_docker_command_never_shows_a_token_in_its_output() -> None:
    """``swarm init`` prints the join command, token included; a failure quoting it is redacted."""
    def reply(argv: list[str], stdin: bytes | None) -> CommandResult:
        if argv[:3] == ["sudo", "docker", "info"]:
            return ok("inactive  false")
        return CommandResult(" ".join(argv), 1, f"docker swarm join --token {TOKEN} 10.0.0.1:2377\n", "")

    with pytest.raises(SwarmError) as e:
        ops.init(cast(Machine, FakeMachine("web-1", reply)), "10.0.0.1")
    assert "docker swarm init --advertise-addr failed" in e.value.message and TOKEN not in str(e.value)


def test_join_token_output_is_in_no_error() -> None:
    def reply(argv: list[str], stdin: bytes | None) -> CommandResult:
        return CommandResult(" ".join(argv), 1, f"{TOKEN}\n", "")

    with pytest.raises(SwarmError) as e:
        ops.join_token(cast(Machine, FakeMachine("web-1", reply)), "worker")
    assert TOKEN not in str(e.value)


# the Engine API script, run here against a unix socket --------------------------------------


class Engine(http.server.BaseHTTPRequestHandler):
    status = 200
    reply = b""
    seen: list[tuple[str, str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.command, self.path, self.headers["Content-Type"], body))
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.reply)))
        self.end_headers()
        self.wfile.write(self.reply)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)  # BaseHTTPRequestHandler wants a (host, port)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    Engine.seen, Engine.status, Engine.reply = [], 200, b""
    server = UnixHTTPServer(str(path), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path
    server.shutdown()
    server.server_close()


def post(socket: Path, path: str, body: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", ops.ENGINE_POST, str(socket), path, "5"], input=body.decode(),
                          capture_output=True, text=True, timeout=30)


def test_the_engine_api_script_posts_its_stdin(engine: Path) -> None:
    Engine.reply = b'{"ok": true}'
    done = post(engine, "/swarm/join", json.dumps({"JoinToken": TOKEN}).encode())
    assert done.returncode == 0 and done.stdout == '{"ok": true}'
    assert Engine.seen == [("POST", "/swarm/join", "application/json", json.dumps({"JoinToken": TOKEN}).encode())]


def test_the_engine_api_script_reports_the_daemons_message(engine: Path) -> None:
    Engine.status, Engine.reply = 503, b'{"message": "This node is already part of a swarm."}\n'
    done = post(engine, "/swarm/join", b"{}")
    assert done.returncode == 1 and done.stderr.strip() == "HTTP 503: This node is already part of a swarm."


def test_the_engine_api_script_is_valid_for_the_oldest_guest_python() -> None:
    ast.parse(ops.ENGINE_POST, feature_version=(3, 7))  # Debian 10's python3 and later
