"""SSHConnection against an in-process paramiko server that stops answering: every
wait is bounded (stdin a command never reads, an SFTP transfer that stalls, an exec
request sshd never answers), and errors never show a secret from the command."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import paramiko
import pytest

from vmctl.errors import VmctlError, WaitTimeout
from vmctl.guest.keys import generate
from vmctl.guest.ssh import Endpoint, SSHConnection

TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
GUARD = 20  # seconds a test waits before calling the code under test stuck


class Guest(paramiko.ServerInterface):
    """sshd as a stuck guest plays it. ``exec``: ``deaf`` accepts a command and never reads
    its stdin nor ends it; ``echo`` copies stdin to stdout and exits 0; ``hung`` never answers."""

    def __init__(self, exec_mode: str, released: threading.Event) -> None:
        self.exec_mode, self.released = exec_mode, released
        self.commands: list[str] = []

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.commands.append(command.decode())
        if self.exec_mode == "hung":
            self.released.wait(GUARD)  # sshd's thread stuck: the request is never answered
        elif self.exec_mode == "echo":
            threading.Thread(target=_echo, args=(channel,), daemon=True).start()
        return True


def _echo(channel: paramiko.Channel) -> None:
    data = b""
    while chunk := channel.recv(65536):
        data += chunk
    channel.sendall(data)
    channel.send_exit_status(0)


class StalledSFTP(paramiko.SubsystemHandler):
    """An SFTP server that accepts the subsystem and then never says a word."""

    released = threading.Event()

    def start_subsystem(self, name: str, transport: paramiko.Transport, channel: paramiko.Channel) -> None:
        self.released.wait(GUARD)


class Server:
    def __init__(self, tmp: Path, exec_mode: str) -> None:
        host, client = generate(), generate("vmctl")
        self.host_key = paramiko.Ed25519Key.from_private_key(StringIO(host.private))
        self.client_key = tmp / "id_ed25519"
        self.client_key.write_text(client.private)
        self.client_key.chmod(0o600)
        self.released = threading.Event()
        StalledSFTP.released = self.released
        self.guest = Guest(exec_mode, self.released)
        self.transports: list[paramiko.Transport] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()
        self.endpoint = Endpoint("web-1", "127.0.0.1", "debian", self.client_key, host.public,
                                 port=self.listener.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(sock)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", StalledSFTP)
            transport.start_server(server=self.guest)
            self.transports.append(transport)

    def close(self) -> None:
        self.released.set()
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str], Server]]:
    servers: list[Server] = []

    def start(exec_mode: str) -> Server:
        servers.append(Server(tmp_path, exec_mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def bounded(fn: Callable[[], Any]) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread: (what it raised, seconds); a test failure if it is still stuck after GUARD."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as e:  # handed back to the test
            outcome.append(e)

    started = time.monotonic()
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(GUARD)
    assert outcome, f"still blocked after {GUARD}s: the wait is unbounded"
    return outcome[0], time.monotonic() - started


def test_a_command_runs_and_reads_its_stdin(serve: Callable[[str], Server]) -> None:
    server = serve("echo")
    with SSHConnection(server.endpoint) as ssh:
        result = ssh.run(["cat"], timeout=10, stdin=b"x" * 3_000_000)  # more than one window
    assert result.rc == 0 and len(result.stdout) == 3_000_000


def test_stdin_a_command_never_reads_times_out(serve: Callable[[str], Server]) -> None:
    server = serve("deaf")
    ssh = SSHConnection(server.endpoint)
    error, took = bounded(lambda: ssh.run(["sudo", "sleep", "infinity"], timeout=1.5, stdin=b"x" * 8_000_000))
    assert isinstance(error, WaitTimeout) and "to read its input" in error.message, error
    assert took < 10


def test_a_command_timeout_never_shows_the_token_it_carried(serve: Callable[[str], Server]) -> None:
    server = serve("deaf")
    ssh = SSHConnection(server.endpoint)
    error, _ = bounded(lambda: ssh.run(["docker", "swarm", "join", "--token", TOKEN, "10.0.0.1:2377"], timeout=1))
    assert isinstance(error, WaitTimeout), error
    assert server.guest.commands and TOKEN in server.guest.commands[0]  # (what never to do: it is in argv)
    assert TOKEN not in f"{error} {error.hint} {error.phase} {error.seen}" and "--token ***" in error.message


def test_an_exec_request_sshd_never_answers_times_out(serve: Callable[[str], Server]) -> None:
    server = serve("hung")
    ssh = SSHConnection(server.endpoint)
    assert ssh.client.get_transport() is not None  # connect first: the bound under test is the exec request's
    error, took = bounded(lambda: ssh.run("true", timeout=1.5))
    assert isinstance(error, WaitTimeout) and "sshd to start" in error.message, error
    assert took < 10


@pytest.mark.parametrize("direction", ["put", "get"])
def test_a_stalled_sftp_transfer_times_out(serve: Callable[[str], Server], tmp_path: Path, direction: str) -> None:
    server = serve("deaf")
    ssh = SSHConnection(server.endpoint)
    local = tmp_path / "payload"
    local.write_bytes(b"x" * 1000)
    copy = (lambda: ssh.put(local, "/tmp/payload", stall=1)) if direction == "put" else (
        lambda: ssh.get("/tmp/payload", local, stall=1))
    error, took = bounded(copy)
    assert isinstance(error, VmctlError) and isinstance(error, WaitTimeout), error
    assert "copying" in error.message and took < 10
    assert local.read_bytes() == b"x" * 1000  # a failed get leaves the local file as it was
