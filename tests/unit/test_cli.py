"""The command line's surface: help with examples, completion, errors as one line plus a hint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vmctl._core import proxy
from vmctl.cli import COMMANDS, main


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*prefix, name))
    return out


@pytest.mark.parametrize("path", _commands(main))
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output or path == ("completion",) or "eval" in result.output, result.output


def test_completion_of_commands_and_image_names(isolated: object) -> None:
    env = {**os.environ, "_VMCTL_COMPLETE": "bash_complete", "COMP_WORDS": "vmctl image bu", "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "vmctl.cli"], env=env, capture_output=True, text=True)
    assert "build" in done.stdout
    env.update(COMP_WORDS="vmctl image build deb", COMP_CWORD="3")
    done = subprocess.run([sys.executable, "-m", "vmctl.cli"], env=env, capture_output=True, text=True)
    assert "debian-12" in done.stdout
    script = CliRunner().invoke(main, ["completion", "bash"]).output
    assert "_VMCTL_COMPLETE" in script and "complete " in script


def test_completion_of_snapshot_commands_vm_names(isolated: object) -> None:
    # libvirt's test driver: one domain, "test"
    env = {**os.environ, "VMCTL_CONNECT": "test:///default", "_VMCTL_COMPLETE": "bash_complete"}
    for words in ("vmctl snapshot rev", "vmctl snapshot revert te", "vmctl snapshot revert test "):
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1))
        done = subprocess.run([sys.executable, "-m", "vmctl.cli"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        if words.endswith("rev"):
            assert "revert" in done.stdout
        elif words.endswith("te"):
            assert "plain,test" in done.stdout.splitlines()
        else:  # the test domain has no snapshots in a fresh process
            assert done.stdout.strip() == ""


def test_an_error_is_one_line_plus_a_hint_and_exit_1(isolated: object) -> None:
    done = subprocess.run([sys.executable, "-m", "vmctl.cli", "image", "pull", "no-such"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: unknown image 'no-such'") and lines[1].startswith("hint: ") and len(lines) == 2


def test_up_refuses_a_boot_mode_the_profile_contradicts(isolated: object) -> None:
    result = CliRunner().invoke(main, ["up", "x", "--profile", "fast", "--boot", "disk"])
    assert result.exit_code == 1
    assert "profile 'fast' needs boot mode 'kernel', not 'disk'" in result.output


def test_lab_refuses_bad_input_before_booting(isolated: object, tmp_path: object) -> None:
    for args, message in [(["--runs", "0"], "runs 0 is out of range"),
                          (["--profile", "fast", "--profile", "fast"], "given twice"),
                          (["--json", "/nonexistent-dir/x.json"], "not a writable directory")]:
        result = CliRunner().invoke(main, ["lab", "boot", *args])
        assert result.exit_code == 1 and message in result.output, result.output


# lazy loading ------------------------------------------------------------------

HEAVY = ("paramiko", "libvirt", "docker")


def _modules_after(*runs: tuple[list[str], dict[str, str]]) -> set[str]:
    """The modules a fresh interpreter holds after running ``vmctl ARGS`` (with ENV) in-process.

    In-process, so that what is measured is exactly what ``main`` imports; in a
    subprocess, so that the modules this test session already holds do not count.
    """
    script = (
        "import json, os, sys\n"
        "from vmctl.cli import main\n"
        f"for args, env in {runs!r}:\n"
        "    os.environ.update(env)\n"
        "    try:\n"
        "        main(args, prog_name='vmctl')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "    for key in env:\n"
        "        del os.environ[key]\n"
        "print('\\nMODULES ' + json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.rsplit("\nMODULES ", 1)[1]))


def _complete(words: str) -> tuple[list[str], dict[str, str]]:
    return [], {"_VMCTL_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}


def test_help_lists_every_command_group_and_command() -> None:
    result = CliRunner().invoke(main, ["--help"], prog_name="vmctl")
    assert result.exit_code == 0
    listed = result.output.split("Commands:\n", 1)[1]
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert {"hypervisor", "image", "docker", "pool", "lab", "doctor", "apply", "destroy", "completion"} <= names
    assert {"up", "ls", "inspect", "ssh", "cp", "console", "stop", "start", "restart", "down"} <= names
    assert names == {name for name, entry in COMMANDS.items() if not entry.hidden}


def test_help_ls_help_and_completion_load_no_heavy_library(isolated: object) -> None:
    loaded = _modules_after((["--help"], {}), (["ls", "--help"], {}), _complete("vmctl "),
                            _complete("vmctl image build "), _complete("vmctl up x --profile "))
    assert "vmctl.cli.machines" in loaded and "vmctl.cli.image" in loaded  # the runs did run
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_help_and_completing_a_command_name_import_no_command_module() -> None:
    loaded = _modules_after((["--help"], {}), _complete("vmctl "), _complete("vmctl i"))
    modules = {f"vmctl.cli.{entry.module.lstrip('.')}" for entry in COMMANDS.values()}
    assert not modules & loaded


def test_the_proxy_helper_loads_no_heavy_library_and_fails_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "vmctl._core.proxy",
                           "vmctl-test-no-such-netns", "127.0.0.1", "22"], capture_output=True, text=True)
    assert done.returncode == 1
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in (*HEAVY, "yaml", "jinja2", "click")}
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "vmctl-test-no-such-netns" in errors[0]


def test_the_hidden_netns_proxy_command_runs_the_proxy_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(proxy, "pipe", lambda *args: calls.append(args))
    result = CliRunner().invoke(main, ["netns-proxy", "ns", "10.0.0.2", "22"])
    assert result.exit_code == 0 and calls == [("ns", "10.0.0.2", 22)]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_lazy_table_matches_the_command_it_names(name: str) -> None:
    """The table is what --help and completion show before anything is imported: it
    must say what the command itself would (name, hidden, shortened help at any width)."""
    entry = COMMANDS[name]
    command = main.get_command(click.Context(main), name)
    assert command is not None and command.name == name
    assert command.hidden == entry.hidden
    stand_in = click.Command(name, help=entry.help)
    for width in range(10, 121):
        assert stand_in.get_short_help_str(width) == command.get_short_help_str(width), width


def test_lazy_help_is_what_click_prints_with_every_command_loaded() -> None:
    ctx = click.Context(main)
    eager = click.Group("vmctl", params=main.params, help=main.help, context_settings=main.context_settings)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        eager.add_command(command, name)
    for width in (60, 80, 100, 200):
        lazy = CliRunner().invoke(main, ["--help"], prog_name="vmctl", terminal_width=width).output
        assert lazy == CliRunner().invoke(eager, ["--help"], prog_name="vmctl", terminal_width=width).output


def test_a_mistyped_command_still_gets_a_suggestion() -> None:
    result = CliRunner().invoke(main, ["imag"], prog_name="vmctl")
    assert result.exit_code == 1 and "error: No such command 'imag'" in result.output
    assert "hint: 'vmctl --help'" in result.output
    if hasattr(click.exceptions, "NoSuchCommand"):  # click >= 8.4 suggests close names
        assert "image" in result.output.split("No such command 'imag'", 1)[1]


def test_the_proxy_relays_both_ways_until_the_far_end_closes() -> None:
    """stdin goes to the socket, the socket's bytes to stdout; stdin's end half-closes it."""
    server = socket.create_server(("127.0.0.1", 0))

    def echo_upper() -> None:
        conn, _ = server.accept()
        with conn:
            received = b""
            while chunk := conn.recv(4096):  # until the proxy's stdin ended
                received += chunk
            conn.sendall(received.upper())

    threading.Thread(target=echo_upper, daemon=True).start()
    code = ("import socket, sys\nfrom vmctl._core.proxy import relay\n"
            f"relay(socket.create_connection(('127.0.0.1', {server.getsockname()[1]})))\n")
    done = subprocess.run([sys.executable, "-c", code], input=b"hello\n" * 20000, capture_output=True, timeout=30)
    server.close()
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"HELLO\n" * 20000


# docker context ------------------------------------------------------------------


@pytest.fixture
def docker_context(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """``vmctl docker context web`` with a docker CLI that is there, a VM with a socket, and
    subprocess.run recording each call (a test sets what it does next)."""
    from vmctl.cli import docker as docker_cli

    monkeypatch.setattr(docker_cli.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(docker_cli, "_made_as_docker_host", lambda ctx, name: True)
    monkeypatch.setattr(docker_cli, "_socket", lambda ctx, name: "/run/web.sock")
    return []


def _docker_runs(monkeypatch: pytest.MonkeyPatch, calls: list[list[str]],
                 do: Callable[[list[str]], subprocess.CompletedProcess[str]]) -> None:
    from vmctl.cli import docker as docker_cli

    def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        assert kw.get("timeout") == docker_cli.DOCKER_CLI_TIMEOUT  # every call is bounded
        return do(argv)

    monkeypatch.setattr(docker_cli.subprocess, "run", run)


def test_docker_context_creates_the_context_with_bounded_docker_calls(
    docker_context: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _docker_runs(monkeypatch, docker_context,
                 lambda argv: subprocess.CompletedProcess(argv, 1 if argv[2] == "inspect" else 0, "", ""))
    result = CliRunner().invoke(main, ["docker", "context", "web"])
    assert result.exit_code == 0, result.output
    assert result.output == "docker context vmctl-web -> unix:///run/web.sock  (docker --context vmctl-web ps)\n"
    assert docker_context == [["docker", "context", "inspect", "vmctl-web"],
                              ["docker", "context", "create", "vmctl-web", "--docker", "host=unix:///run/web.sock",
                               "--description", "vmctl VM web"]]


def test_a_docker_context_call_that_hangs_is_a_one_line_error(
    docker_context: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(argv: list[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, 30)

    _docker_runs(monkeypatch, docker_context, hang)
    result = CliRunner().invoke(main, ["docker", "context", "web"])
    assert result.exit_code == 1 and not isinstance(result.exception, subprocess.TimeoutExpired)
    lines = result.output.strip().splitlines()
    assert lines[0] == "error: 'docker context inspect' did not finish in 30s" and lines[1].startswith("hint: ")
    assert len(lines) == 2


def test_a_failed_docker_context_create_is_one_line(
    docker_context: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _docker_runs(monkeypatch, docker_context, lambda argv: subprocess.CompletedProcess(
        argv, 1, "", "Usage: docker context create\n\ncontext \"vmctl-web\" already exists\n"))
    result = CliRunner().invoke(main, ["docker", "context", "web"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "error: docker context create failed (exit 1): context \"vmctl-web\" already exists")


def test_docker_context_without_the_docker_cli_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.cli import docker as docker_cli

    monkeypatch.setattr(docker_cli.shutil, "which", lambda name: None)
    result = CliRunner().invoke(main, ["docker", "context", "web"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["error: the docker CLI is not installed", f"hint: {docker_cli.NO_DOCKER_CLI}"]


# docker install: every guest command bounded --------------------------------------


GUEST_FILES = {"cat /etc/os-release": "ID=debian\nVERSION_CODENAME=bookworm\n"}


class _Guest:
    """A stand-in for a Machine: every command must be given its timeout (no default here)."""

    name, user = "web", "debian"

    def __init__(self) -> None:
        self.timeouts: list[tuple[str, float]] = []
        self.copied: list[str] = []

    def run(self, command: str | list[str], *, timeout: float, stdin: bytes | None = None) -> object:
        from vmctl._core.proc import CommandResult

        text = command if isinstance(command, str) else " ".join(command)
        self.timeouts.append((text, timeout))
        out = GUEST_FILES.get(text, "20.10.24\n")
        return CommandResult(text, 1 if text.startswith("sudo sh -c") else 0, out, "")

    def get(self, remote: str, local: Path) -> None:  # bounded in guest/ssh.py (TRANSFER_STALL)
        self.copied.append(remote)
        local.write_text("Package: x\n")

    def close(self) -> None:
        pass


def test_every_guest_command_of_an_offline_install_is_bounded(isolated: object,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vmctl.engine import install

    monkeypatch.setattr(install.AptRoot, "fetch", lambda self, status, packages, optional=(): [])  # nothing to push
    guest = _Guest()
    result = install.install(guest, "offline")  # type: ignore[arg-type]
    assert result.changed and result.version == "20.10.24" and result.packages == 0
    assert guest.copied == ["/var/lib/dpkg/status"]
    assert all(0 < timeout <= 1800 for _, timeout in guest.timeouts)
