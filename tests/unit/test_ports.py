"""Published ports: the spec syntax, clashes, what a container publishes, and the relays."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from vmctl._core.relay import Forward
from vmctl.engine.events import published
from vmctl.errors import ConfigError
from vmctl.machines import forwarder
from vmctl.model.ports import PortSpec, overlapping, parse_all
from vmctl.model.spec import MachineSpec


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("8080:80", "127.0.0.1:8080:80/tcp"),
        ("8080:80/tcp", "127.0.0.1:8080:80/tcp"),
        ("5353:53/udp", "127.0.0.1:5353:53/udp"),
        ("0.0.0.0:8080:80", "0.0.0.0:8080:80/tcp"),
        ("[::1]:8080:80", "[::1]:8080:80/tcp"),
        ("[::]:1:65535/udp", "[::]:1:65535/udp"),
    ],
)
def test_a_port_spec_is_parsed_and_normalised(text: str, normal: str) -> None:
    assert str(PortSpec.parse(text)) == normal
    assert PortSpec.parse(normal) == PortSpec.parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("80", "invalid port '80'"),
        ("a:80", "invalid port 'a:80'"),
        ("0:80", "0 is not in 1-65535"),
        ("8080:70000", "70000 is not in 1-65535"),
        ("8080:80/sctp", "protocol 'sctp' is not tcp or udp"),
        ("1.2.3:8080:80", "'1.2.3' is not an IP address"),
        ("localhost:8080:80", "invalid port 'localhost:8080:80'"),
        ("8080:80\nx", "invalid port"),
        ("", "invalid port ''"),
    ],
)
def test_a_bad_port_spec_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        PortSpec.parse(text)
    assert message in e.value.message and "\n" not in e.value.message.replace(repr(text), "")
    assert "HOSTPORT:GUESTPORT" in e.value.hint


def test_two_forwards_on_one_host_socket_are_refused() -> None:
    with pytest.raises(ConfigError, match="both want host port 8080/tcp"):
        parse_all(["8080:80", "8080:81"])
    with pytest.raises(ConfigError, match="both want host port 8080/tcp"):
        parse_all(["127.0.0.1:8080:80", "0.0.0.0:8080:81"])  # a wildcard covers loopback
    assert len(parse_all(["8080:80", "8080:80/udp", "127.0.0.2:8080:80"])) == 3


def test_overlapping_pairs_each_clash() -> None:
    mine, theirs = parse_all(["8080:80", "9090:90"]), parse_all(["0.0.0.0:8080:1", "7070:70"])
    assert overlapping(mine, theirs) == [(PortSpec(8080, 80), PortSpec(8080, 1, "tcp", "0.0.0.0"))]
    assert overlapping(mine, parse_all(["9090:90/udp"])) == []


def test_the_machine_spec_keeps_normalised_ports_through_json() -> None:
    spec = MachineSpec("web", ports=("8080:80", "5353:53/udp"))
    assert spec.ports == ("127.0.0.1:5353:53/udp", "127.0.0.1:8080:80/tcp")
    assert MachineSpec.from_dict(spec.to_dict()) == spec
    same = MachineSpec("web", ports=("127.0.0.1:8080:80/tcp",))
    assert same.differences(MachineSpec("web", ports=("8080:80",))) == []
    with pytest.raises(ConfigError, match="invalid port"):
        MachineSpec("web", ports=("nope",))


def test_published_reads_what_docker_inspect_reports() -> None:
    inspect = {"NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
        "6379/tcp": [{"HostIp": "127.0.0.1", "HostPort": "6379"}],  # kept inside the VM
        "9000/tcp": None,  # exposed, not published
    }}}
    assert published(inspect) == {PortSpec(8080, 8080), PortSpec(5353, 5353, "udp")}
    assert published({}) == set()


def _echo_server(kind: socket.SocketKind) -> socket.socket:
    server = socket.socket(socket.AF_INET, kind)
    server.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        server.listen()

        def serve() -> None:
            conn, _ = server.accept()
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.close()
    else:
        def serve() -> None:
            while True:
                data, peer = server.recvfrom(65536)
                server.sendto(data.upper(), peer)
    threading.Thread(target=serve, daemon=True).start()
    return server


def test_a_tcp_forward_relays_a_stream_both_ways_until_it_ends() -> None:
    server = _echo_server(socket.SOCK_STREAM)
    target = server.getsockname()
    fwd = Forward("127.0.0.1", 0, "tcp", lambda: socket.create_connection(target))
    fwd.start()
    assert fwd.sock is not None
    with socket.create_connection(fwd.sock.getsockname()) as client:
        payload = os.urandom(3 << 20)
        threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR)), daemon=True).start()
        got = bytearray()
        while data := client.recv(1 << 20):
            got += data
    assert bytes(got) == payload
    fwd.stop()
    server.close()


def test_a_udp_forward_answers_each_peer() -> None:
    server = _echo_server(socket.SOCK_DGRAM)
    target = server.getsockname()

    def dial() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(target)
        return sock

    fwd = Forward("127.0.0.1", 0, "udp", dial)
    fwd.start()
    assert fwd.sock is not None
    for word in (b"one", b"two"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(5)
            client.sendto(word, fwd.sock.getsockname())
            assert client.recv(100) == word.upper()
    fwd.stop()


def test_a_taken_host_port_fails_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        fwd = Forward("127.0.0.1", taken.getsockname()[1], "tcp", lambda: socket.socket())
        with pytest.raises(OSError):
            fwd.start()


def test_a_pid_file_of_another_process_is_not_taken_for_the_forwarder(tmp_path: Path) -> None:
    """The PID in a stale file may belong to anything now: only a forwarder of that VM counts."""
    files = forwarder.paths(tmp_path, "web")
    files["pid"].write_text(str(os.getpid()))  # this test process: alive, but not a forwarder
    assert forwarder.running_pid(tmp_path, "web") is None
    assert forwarder.status(tmp_path, "web") == {"state": "stopped"}
    assert forwarder.stop(tmp_path, "web") is False and not files["pid"].exists()
    files["pid"].write_text("not a pid")
    assert forwarder.running_pid(tmp_path, "web") is None
