"""Docker hosts, for real: install over SSH (offline: the host fetches the
packages), containers through `vmctl ssh`, the docker CLI and the Docker SDK,
an idempotent re-install, a repaired half-install, image loading, and baking."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import vmctl
from vmctl.engine.client import client as docker_client
from vmctl.guest.keys import generate
from vmctl.guest.ssh import Endpoint, SSHConnection

from .conftest import BAKED_IMAGE, DOCK, IMAGE, run_readme_python
from .conftest import vmctl as run_vmctl

BAKED_VM = "e2e-baked"


def test_up_with_docker_reports_the_docker_phase(dockerhost: dict[str, Any]) -> None:
    assert dockerhost["state"] == "running" and dockerhost["timings"]["docker"] > 0
    print(f"\nfresh Docker host: {dockerhost['timings']}")


def test_a_container_runs_through_vmctl_ssh_as_the_login_user(dockerhost: dict[str, Any]) -> None:
    out = run_vmctl("ssh", DOCK, "--", "docker run --rm --network none vmctl/busybox:latest echo hello-from-container")
    assert out.stdout.strip() == "hello-from-container"
    config = json.loads(run_vmctl("ssh", DOCK, "--", "cat /etc/docker/daemon.json").stdout)
    assert config["log-opts"]["max-size"] == "10m" and config["live-restore"] is True


def test_install_again_does_nothing(dockerhost: dict[str, Any]) -> None:
    result = json.loads(run_vmctl("docker", "install", DOCK, "--json").stdout)
    assert result["changed"] is False and result["version"].startswith("20.")


def test_a_half_finished_install_is_completed(dockerhost: dict[str, Any]) -> None:
    run_vmctl("ssh", DOCK, "--", "sudo rm /etc/docker/daemon.json && sudo systemctl stop docker docker.socket")
    result = json.loads(run_vmctl("docker", "install", DOCK, "--json").stdout)
    assert result["changed"] is True and result["method"] == "offline" and result["packages"] == 0
    assert run_vmctl("ssh", DOCK, "--", "docker info --format '{{.ServerVersion}}'").stdout.strip() == result["version"]


def test_docker_sdk_from_the_host(dockerhost: dict[str, Any]) -> None:
    with vmctl.connect() as host:
        sdk = host.get(DOCK).docker()
        out = sdk.containers.run("vmctl/busybox:latest", ["echo", "hello-sdk"], remove=True, network_mode="none")
        assert out == b"hello-sdk\n"
        assert any("vmctl/busybox:latest" in image.tags for image in sdk.images.list())
        sdk.close()


def test_the_readme_docker_example_runs_as_written(
    dockerhost: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Docker host example, on the shared Docker host (an identical spec is reused)."""
    run_readme_python(1, {"dock": DOCK})
    assert capsys.readouterr().out == "hi\n"
    with vmctl.connect() as host:
        assert host.get(DOCK).record.created == dockerhost["created"]  # reused, not made again


def test_docker_sdk_refuses_a_wrong_host_key(dockerhost: dict[str, Any]) -> None:
    with vmctl.connect() as host:
        real = host.get(DOCK).endpoint()
        forged = Endpoint(real.machine, real.address, real.user, real.client_key, generate().public, netns=real.netns)
        with pytest.raises(vmctl.HostKeyMismatch):
            docker_client(SSHConnection(forged))


def test_load_a_rootfs_tar_and_a_docker_save_archive(dockerhost: dict[str, Any], tmp_path: Path) -> None:
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


def test_docker_env_works_with_ssh_and_the_docker_cli(dockerhost: dict[str, Any]) -> None:
    env = run_vmctl("docker", "env", DOCK).stdout
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
    if shutil.which("docker"):
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "vmctl/busybox:latest", "echo", "cli"],
            env={**os.environ, "DOCKER_HOST": host},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0 and done.stdout.strip() == "cli", done.stderr
        run_vmctl("docker", "context", DOCK)
        ctx = subprocess.run(["docker", "--context", alias, "ps", "-q"], capture_output=True, text=True, timeout=300)
        assert ctx.returncode == 0, ctx.stderr


def test_bake_then_up_from_the_baked_image(dockerhost: dict[str, Any], request: pytest.FixtureRequest) -> None:
    before = run_vmctl("ssh", DOCK, "--", "cat /etc/machine-id").stdout.strip()
    image = request.getfixturevalue("baked_image")  # bakes DOCK now, leaving it stopped
    assert image["source"] == "bake" and image["extra"]["parent"] == IMAGE
    listed = {i["name"]: i for i in json.loads(run_vmctl("image", "ls", "--json").stdout)}
    assert image["extra"]["parent_sha256"] == listed[IMAGE]["sha256"] and listed[BAKED_IMAGE]["stale"] is None
    assert image["lean_initrd"]  # the fast profile can boot it
    assert json.loads(run_vmctl("inspect", DOCK, "--json").stdout)["state"] == "shutoff"
    try:
        # the fast profile: its early unit, not cloud-init, gives this new instance its keys
        vm = json.loads(
            run_vmctl("up", BAKED_VM, "--image", BAKED_IMAGE, "--docker", "--profile", "fast", "--json").stdout
        )
        print(f"\nDocker host from the baked image: {vm['timings']}")
        after = run_vmctl("ssh", BAKED_VM, "--", "cat /etc/machine-id").stdout.strip()
        assert after and after != before
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
