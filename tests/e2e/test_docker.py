"""Docker hosts, for real: install over SSH (offline: the host fetches the
packages), containers through `vmctl ssh`, the docker CLI and the Docker SDK,
an idempotent re-install, a repaired half-install, image loading, and baking."""

from __future__ import annotations

import grp
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import vmctl
from vmctl.engine.client import client as docker_client
from vmctl.guest.keys import generate
from vmctl.guest.ssh import Endpoint, SSHConnection

from .conftest import BAKED_IMAGE, DOCK, IMAGE, VMCTL, run_readme_python, until, vmctl_json
from .conftest import vmctl as run_vmctl

BAKED_VM = "e2e-baked"


def test_up_with_docker_reports_the_docker_phase(dockerhost: dict[str, Any]) -> None:
    assert dockerhost["state"] == "running" and dockerhost["timings"]["docker"] > 0
    print(f"\nfresh Docker host: {dockerhost['timings']}")


def test_a_container_runs_through_vmctl_ssh_as_the_login_user(dock: dict[str, Any]) -> None:
    out = run_vmctl("ssh", DOCK, "--", "docker run --rm --network none vmctl/busybox:latest echo hello-from-container")
    assert out.stdout.strip() == "hello-from-container"
    config = json.loads(run_vmctl("ssh", DOCK, "--", "cat /etc/docker/daemon.json").stdout)
    assert config["log-opts"]["max-size"] == "10m" and config["live-restore"] is True


def test_install_again_does_nothing(dock: dict[str, Any]) -> None:
    result = json.loads(run_vmctl("docker", "install", DOCK, "--json").stdout)
    assert result["changed"] is False and result["version"].startswith("20.")


def test_a_half_finished_install_is_completed(dock: dict[str, Any]) -> None:
    run_vmctl("ssh", DOCK, "--", "sudo rm /etc/docker/daemon.json && sudo systemctl stop docker docker.socket")
    result = json.loads(run_vmctl("docker", "install", DOCK, "--json").stdout)
    assert result["changed"] is True and result["method"] == "offline" and result["packages"] == 0
    assert run_vmctl("ssh", DOCK, "--", "docker info --format '{{.ServerVersion}}'").stdout.strip() == result["version"]


def test_docker_sdk_from_the_host(dock: dict[str, Any]) -> None:
    with vmctl.connect() as host:
        sdk = host.get(DOCK).docker()
        out = sdk.containers.run("vmctl/busybox:latest", ["echo", "hello-sdk"], remove=True, network_mode="none")
        assert out == b"hello-sdk\n"
        assert any("vmctl/busybox:latest" in image.tags for image in sdk.images.list())
        sdk.close()


def test_the_readme_docker_example_runs_as_written(
    dock: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Docker host example, on the shared Docker host (an identical spec is reused)."""
    run_readme_python(1, {"dock": DOCK})
    assert capsys.readouterr().out == "hi\n"
    with vmctl.connect() as host:
        assert host.get(DOCK).record.created == dock["created"]  # reused, not made again


def test_docker_sdk_refuses_a_wrong_host_key(dock: dict[str, Any]) -> None:
    with vmctl.connect() as host:
        real = host.get(DOCK).endpoint()
        forged = Endpoint(real.machine, real.address, real.user, real.client_key, generate().public, netns=real.netns)
        with pytest.raises(vmctl.HostKeyMismatch):
            docker_client(SSHConnection(forged))


def test_load_a_rootfs_tar_and_a_docker_save_archive(dock: dict[str, Any], tmp_path: Path) -> None:
    tar = tmp_path / "busybox.tar"
    run_vmctl("docker", "make-busybox", str(tar))
    assert run_vmctl("docker", "load", DOCK, str(tar), "--tag", "busybox:local").returncode == 0
    assert (
        run_vmctl("ssh", DOCK, "--", "docker run --rm --network none busybox:local uname -s").stdout.strip() == "Linux"
    )
    run_vmctl("ssh", DOCK, "--", "docker save busybox:local -o /tmp/saved.tar && docker rmi busybox:local")
    run_vmctl("cp", f"{DOCK}:/tmp/saved.tar", str(tmp_path / "saved.tar"))
    loaded = run_vmctl("docker", "load", DOCK, str(tmp_path / "saved.tar")).stdout
    assert "busybox:local" in loaded
    assert run_vmctl("docker", "load", DOCK, str(tar), check=False).returncode == 1  # a rootfs needs --tag


def _docker_host() -> str:
    env = run_vmctl("docker", "env", DOCK).stdout
    return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("export DOCKER_HOST="))


def _docker(*args: str, host: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real docker CLI, against the VM's forwarded socket unless ``host`` says otherwise."""
    env = {**os.environ, "DOCKER_HOST": host or _docker_host()}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_docker_env_works_with_ssh_and_the_docker_cli(dock: dict[str, Any]) -> None:
    env = run_vmctl("docker", "env", DOCK, "--ssh").stdout
    host = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("export DOCKER_HOST="))
    assert host == f"ssh://vmctl-{DOCK}"
    alias = host.removeprefix("ssh://")
    version = subprocess.run(
        ["ssh", alias, "docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.returncode == 0 and version.stdout.strip().startswith("20."), version.stderr
    done = _docker("run", "--rm", "--network", "none", "vmctl/busybox:latest", "echo", "cli", host=host)
    assert done.returncode == 0 and done.stdout.strip() == "cli", done.stderr
    run_vmctl("docker", "context", DOCK, "--ssh")
    ctx = subprocess.run(["docker", "--context", alias, "ps", "-q"], capture_output=True, text=True, timeout=300)
    assert ctx.returncode == 0, ctx.stderr


def test_the_docker_socket_is_forwarded_privately_and_shown(dock: dict[str, Any]) -> None:
    report = json.loads(run_vmctl("docker", "socket", DOCK, "--json").stdout)
    path = Path(report["socket"])
    assert report["docker_host"] == f"unix://{path}" and _docker_host() == f"unix://{path}"
    mode = path.stat()
    assert stat.S_ISSOCK(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o660
    assert grp.getgrgid(mode.st_gid).gr_name == "docker"  # docker.io on the host made the group
    forwarder = json.loads(run_vmctl("inspect", DOCK, "--json").stdout)["forwarder"]
    assert forwarder["state"] == "running" and forwarder["docker"] == {"state": "ok", "error": ""}
    assert forwarder["socket"] == str(path)
    listed = {r["name"]: r for r in json.loads(run_vmctl("ls", "--json").stdout)}
    assert listed[DOCK]["forwarder"]["docker"]["state"] == "ok"
    assert "docker ok" in run_vmctl("ls").stdout


def test_the_docker_cli_and_a_context_use_the_socket(dock: dict[str, Any]) -> None:
    version = _docker("version", "--format", "{{.Server.Version}}")
    assert version.returncode == 0 and version.stdout.strip().startswith("20."), version.stderr
    done = _docker("run", "--rm", "--network", "none", "vmctl/busybox:latest", "echo", "via-socket")
    assert done.returncode == 0 and done.stdout.strip() == "via-socket", done.stderr
    assert run_vmctl("docker", "context", DOCK).stdout.startswith(f"docker context vmctl-{DOCK} -> unix://")
    ctx = subprocess.run(["docker", "--context", f"vmctl-{DOCK}", "ps", "-q"], capture_output=True, text=True,
                         timeout=120)
    assert ctx.returncode == 0, ctx.stderr


def _ssh_children(pid: int) -> list[int]:
    """The forwarder's ssh processes (by parent PID, from /proc)."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)
        except OSError:
            continue
        if fields[0].endswith("(ssh") and int(fields[1].split()[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def test_the_docker_socket_comes_back_when_its_connection_drops(dock: dict[str, Any]) -> None:
    forwarder = json.loads(run_vmctl("inspect", DOCK, "--json").stdout)["forwarder"]
    [ssh] = _ssh_children(forwarder["pid"])
    os.kill(ssh, signal.SIGKILL)  # as a dropped connection looks to the forwarder

    def back() -> bool:
        again = _ssh_children(forwarder["pid"])
        return bool(again) and again != [ssh] and _docker("version").returncode == 0

    assert until(back, 60)
    assert json.loads(run_vmctl("inspect", DOCK, "--json").stdout)["forwarder"]["docker"]["state"] == "ok"


COMPOSE = """\
version: "2.4"
services:
  web:
    image: vmctl/busybox:latest
    command: ["sh", "-c", "mkdir -p /www && echo hello-compose > /www/index.html && exec httpd -f -p 80 -h /www"]
  client:
    image: vmctl/busybox:latest
    depends_on: [web]
    command: ["sh", "-c", "for i in $$(seq 30); do wget -qO- http://web/index.html && exit 0; sleep 1; done; exit 1"]
"""


def test_docker_compose_brings_two_services_up_and_down(dock: dict[str, Any], tmp_path: Path) -> None:
    """Debian 12's docker-compose, through the socket: the client reaches the web service by its name."""
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    env = {**os.environ, "DOCKER_HOST": _docker_host()}

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-p", "e2e", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    try:
        up = compose("up", "--abort-on-container-exit", "--exit-code-from", "client")
        assert up.returncode == 0, up.stderr
        assert "hello-compose" in up.stdout
    finally:
        down = compose("down")
    assert down.returncode == 0, down.stderr
    assert _docker("ps", "-aq", "--filter", "label=com.docker.compose.project=e2e").stdout.strip() == ""


def _curl(url: str) -> str | None:
    """The body at ``url`` as curl on the host fetches it, or None if nothing answers."""
    done = subprocess.run(["curl", "-sf", "--max-time", "5", url], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_port_a_container_publishes_answers_on_the_host_while_it_runs(dock: dict[str, Any]) -> None:
    port = _free_port()
    web = "mkdir -p /www && echo hello-port > /www/index.html && exec httpd -f -p 80 -h /www"
    started = _docker("run", "-d", "--name", "e2e-web", "-p", f"{port}:80", "vmctl/busybox:latest", "sh", "-c", web)
    assert started.returncode == 0, started.stderr
    try:
        assert until(lambda: _curl(f"http://127.0.0.1:{port}/index.html")) == "hello-port\n"
        rows = json.loads(run_vmctl("port", "ls", DOCK, "--json").stdout)
        assert {"port": f"127.0.0.1:{port}:{port}/tcp", "source": "docker", "state": "listening", "error": ""} in rows
    finally:
        _docker("rm", "-f", "e2e-web")
    assert until(lambda: _curl(f"http://127.0.0.1:{port}/index.html") is None)
    assert all(r["port"] != f"127.0.0.1:{port}:{port}/tcp" for r in json.loads(
        run_vmctl("port", "ls", DOCK, "--json").stdout))


UDP_ECHO = """\
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9000))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
"""


def test_a_udp_port_a_container_publishes_echoes_on_the_host(dock: dict[str, Any]) -> None:
    port = _free_port(socket.SOCK_DGRAM)
    # busybox has no UDP server; the guest's own python3 is lent to the container, read-only
    lend = [arg for d in ("/usr", "/lib", "/lib64") for arg in ("-v", f"{d}:{d}:ro")]
    started = _docker("run", "-d", "--name", "e2e-udp", "-p", f"{port}:9000/udp", *lend, "vmctl/busybox:latest",
                      "/usr/bin/python3", "-c", UDP_ECHO)
    assert started.returncode == 0, started.stderr

    def echo() -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2)
            client.sendto(b"ping-udp\n", ("127.0.0.1", port))
            try:
                return client.recv(100)
            except OSError:
                return None

    try:
        assert until(echo, 60) == b"ping-udp\n"
    finally:
        _docker("rm", "-f", "e2e-udp")


def test_idle_sessions_last(dock: dict[str, Any]) -> None:
    """A container silent for 60 s over DOCKER_HOST=ssh://, and a shell idle for 60 s, both still answer."""
    quiet = subprocess.Popen(
        ["docker", "run", "--rm", "--network", "none", "vmctl/busybox:latest", "sh", "-c", "sleep 60; echo awake"],
        env={**os.environ, "DOCKER_HOST": f"ssh://vmctl-{DOCK}"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    shell = subprocess.Popen([*VMCTL, "ssh", DOCK], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert shell.stdin is not None
    shell.stdin.write("echo before\n")
    shell.stdin.flush()
    time.sleep(65)
    out, err = shell.communicate(input="echo after-$((6*7))\n", timeout=120)  # and then end of input
    said = [line for line in out.splitlines() if line in ("before", "after-42")]  # after the login banner
    assert shell.returncode == 0 and said == ["before", "after-42"], err
    woke, err = quiet.communicate(timeout=120)
    assert quiet.returncode == 0 and woke.strip() == "awake", err


def test_a_snapshot_of_a_docker_host_keeps_its_containers(dock: dict[str, Any]) -> None:
    run_vmctl("ssh", DOCK, "--", "docker rm -f e2e-kept >/dev/null 2>&1; "
              "docker run -d --name e2e-kept --network none vmctl/busybox:latest sleep 3600")
    try:
        taken = json.loads(run_vmctl("snapshot", "create", DOCK, "e2e-containers", "--json").stdout)
        assert taken["memory"] and taken["state"] == "running"
        run_vmctl("ssh", DOCK, "--", "docker rm -f e2e-kept")
        run_vmctl("snapshot", "revert", DOCK, "e2e-containers")
        # the container runs again, seen through the Docker socket's forward, which came back too
        done = _docker("ps", "--filter", "name=e2e-kept", "--format", "{{.Status}}", host=_docker_host())
        assert done.stdout.startswith("Up"), done.stdout + done.stderr
    finally:
        run_vmctl("ssh", DOCK, "--", "docker rm -f e2e-kept", check=False)
        run_vmctl("snapshot", "rm", DOCK, "e2e-containers", check=False)


CLONE = "e2e-clone"
IDENTITY = ("hostname; cat /etc/machine-id; sudo cat /etc/ssh/ssh_host_*_key.pub | cut -d' ' -f1,2 | tr ' ' _; "
            "docker info --format '{{.ID}}'; cat ~/e2e-clone-mark; "
            "docker ps -a --format '{{.Names}}' | grep -c e2e-cloned")


def test_a_clone_of_a_stopped_docker_host_has_its_disk_and_an_identity_of_its_own(dock: dict[str, Any]) -> None:
    run_vmctl("ssh", DOCK, "--", "echo from-the-source > ~/e2e-clone-mark; docker rm -f e2e-cloned >/dev/null 2>&1; "
              "docker create --name e2e-cloned --network none vmctl/busybox:latest true >/dev/null")
    source = run_vmctl("ssh", DOCK, "--", IDENTITY).stdout.split()
    running = run_vmctl("clone", DOCK, CLONE, check=False)
    assert running.returncode == 1 and f"{DOCK} is running: only a stopped VM can be cloned" in running.stderr
    run_vmctl("stop", DOCK)
    try:
        new = json.loads(run_vmctl("clone", DOCK, CLONE, "--json").stdout)
        copy = run_vmctl("ssh", CLONE, "--", IDENTITY).stdout.split()
        # hostname, machine-id, host key (the one pinned), Docker engine ID: all its own
        assert copy[0] == CLONE and copy[1] != source[1] and copy[2] != source[2] and copy[3] != source[3]
        assert copy[2] == "_".join(new["host_key"].split()[:2]) and len(copy) == 6  # one host key, the pinned one
        assert new["mac"] != vmctl_json("inspect", DOCK)["mac"]
        assert copy[4:] == ["from-the-source", "1"]  # the source's files and containers
        assert new["forwarder"]["docker"]["state"] == "ok" and new["spec"]["ports"] == []
        again = run_vmctl("clone", DOCK, CLONE, check=False)
        assert again.returncode == 1 and f"a VM named '{CLONE}' exists already" in again.stderr
    finally:
        run_vmctl("down", CLONE, check=False)
    run_vmctl("start", DOCK)  # the source, as it was
    assert run_vmctl("ssh", DOCK, "--", IDENTITY).stdout.split() == source
    run_vmctl("ssh", DOCK, "--", "docker rm -f e2e-cloned; rm ~/e2e-clone-mark")


def test_bake_then_up_from_the_baked_image(baked_image: dict[str, Any]) -> None:
    image = baked_image  # baked from DOCK, which it left stopped
    assert image["source"] == "bake" and image["extra"]["parent"] == IMAGE
    listed = {i["name"]: i for i in json.loads(run_vmctl("image", "ls", "--json").stdout)}
    assert image["extra"]["parent_sha256"] == listed[IMAGE]["sha256"] and listed[BAKED_IMAGE]["stale"] is None
    assert image["lean_initrd"]  # the fast profile can boot it
    stopped = image["source_after"]
    assert stopped["state"] == "shutoff" and stopped["forwarder"] == {"state": "stopped"}
    assert not stopped["socket_left"]  # the bake stopped its forwarder
    # a VM with a snapshot can be baked: the image has its current state, and no snapshot
    assert [s["name"] for s in image["source_snapshots"]] == ["e2e-before-bake"]
    baked = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", image["path"]],
                                      capture_output=True, text=True, check=True).stdout)
    assert not baked.get("snapshots")
    try:
        # the fast profile: its early unit, not cloud-init, gives this new instance its keys
        vm = json.loads(
            run_vmctl("up", BAKED_VM, "--image", BAKED_IMAGE, "--docker", "--profile", "fast", "--json").stdout
        )
        print(f"\nDocker host from the baked image: {vm['timings']}")
        after = run_vmctl("ssh", BAKED_VM, "--", "cat /etc/machine-id").stdout.strip()
        assert after and after != image["source_machine_id"]
        out = run_vmctl("ssh", BAKED_VM, "--", "docker run --rm --network none vmctl/busybox:latest hostname").stdout
        assert out.strip()
        with vmctl.connect() as host:
            machine = host.get(BAKED_VM)
            key = machine.run("sudo cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
            assert key == machine.record.host_key.split()[:2]
            stamp = machine.run("sudo cat /var/lib/vmctl/fast-boot-instance").stdout.strip()
            assert stamp == machine.record.instance_id
            # systemd's own record, not the journal: a unit this early can finish before
            # journald is up, and its "Finished" line then reaches the journal without a unit
            state = machine.run("systemctl show vmctl-fast-boot -p ActiveState -p Result -p ExecMainStatus").stdout
            assert set(state.split()) == {"ActiveState=active", "Result=success", "ExecMainStatus=0"}
            # Docker came with the image: its package predates this instance's first boot
            older = machine.run("sudo test /var/lib/dpkg/info/docker.io.list -ot /var/lib/vmctl/fast-boot-instance")
            assert older.rc == 0
            machine.close()
    finally:
        run_vmctl("down", BAKED_VM, check=False)
