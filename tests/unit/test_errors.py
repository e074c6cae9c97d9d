"""Errors never carry a secret: every message and hint is redacted, whichever error it is."""

from __future__ import annotations

import pytest

from vmctl._core.proc import CommandResult, run
from vmctl.errors import (
    CommandError,
    PhaseError,
    PoolError,
    SSHError,
    SwarmError,
    VmctlError,
    WaitTimeout,
    redact,
)

TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"
JOIN = f"sudo docker swarm join --token {TOKEN} --advertise-addr 10.0.0.2 10.0.0.1:2377"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (JOIN, "sudo docker swarm join --token *** --advertise-addr 10.0.0.2 10.0.0.1:2377"),
        ("docker swarm join --token=abc123 x", "docker swarm join --token=*** x"),
        (f"To add a worker, run: docker swarm join {TOKEN} 10.0.0.1:2377", "join SWMTKN-*** 10.0.0.1"),
        ("curl -d 'user=me&password=hunter2' http://x", "password=***"),
        ("env DB_PASSWORD=s3cret MYSQL_ROOT_PASSWORD='a b' run", "DB_PASSWORD=*** MYSQL_ROOT_PASSWORD=*** run"),
        ('{"JoinToken": "abc\\"def", "password": "p"}', '{"JoinToken": "***", "password": "***"}'),
        ("login --password 'a b c' --user me", "login --password *** --user me"),
        ("docker swarm join-token -q worker", "docker swarm join-token -q worker"),  # nothing secret here
        ("vmctl ssh web-1 -- sudo journalctl -u docker", "vmctl ssh web-1 -- sudo journalctl -u docker"),
    ],
)
def test_redact_masks_secrets_and_keeps_the_rest(text: str, shown: str) -> None:
    out = redact(text)
    assert shown in out
    for secret in (TOKEN, "abc123", "hunter2", "s3cret", "abc\\\"def", "a b c"):
        assert secret not in out


def _every_text(error: VmctlError) -> str:
    return " ".join([str(error), error.message, error.hint, *map(str, error.args)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: SSHError(f"web-1: SSH command {JOIN!r} failed: EOF"),
        lambda: SwarmError(f"web-2: docker swarm join failed: {TOKEN} is not valid"),
        lambda: VmctlError("x", hint=f"run '{JOIN}' by hand"),
        lambda: WaitTimeout(f"command {JOIN!r}", 300, f"Error: {TOKEN}"),
        lambda: PhaseError("web-1", "docker", 3, SwarmError(JOIN), []),
        lambda: PoolError("web", "joining the swarm", {"web-2": RuntimeError(JOIN), "web-1": "id"}),
    ],
)
def test_no_error_shows_a_join_token(make: object) -> None:
    error = make()  # type: ignore[operator]
    assert TOKEN not in _every_text(error) and "SWMTKN" in _every_text(error) + JOIN


def test_a_wait_timeout_keeps_its_fields_redacted() -> None:
    error = WaitTimeout(f"command {JOIN!r}", 300, f"Error response from daemon: {TOKEN}")
    assert TOKEN not in error.phase and TOKEN not in error.seen and "--token ***" in error.phase


def test_a_command_error_for_a_command_with_a_token_never_shows_it() -> None:
    result = CommandResult(JOIN, 1, f"docker swarm join --token {TOKEN}\n", f"Error: bad token {TOKEN}\n")
    error = CommandError(result, what="docker swarm join")
    assert TOKEN not in _every_text(error)
    assert TOKEN not in error.result.command + error.result.stdout + error.result.stderr
    assert error.result.rc == 1 and "--token ***" in error.result.command


def test_a_failed_host_command_never_shows_the_token_on_its_command_line() -> None:
    with pytest.raises(CommandError) as e:
        run(["sh", "-c", 'echo "joining with $1" >&2; exit 3', "sh", TOKEN], what="a join")
    assert e.value.result.rc == 3 and TOKEN not in _every_text(e.value) + e.value.result.command
    assert "joining with SWMTKN-***" in e.value.message


def test_a_host_command_that_runs_too_long_never_shows_the_token() -> None:
    with pytest.raises(VmctlError) as e:
        run(["sh", "-c", "sleep 5", "sh", "--token", TOKEN], what="sleep", timeout=0.2)
    assert "did not finish" in e.value.message and TOKEN not in _every_text(e.value)
