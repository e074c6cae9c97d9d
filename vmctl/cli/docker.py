"""``vmctl docker install|load|make-busybox|env|context``: Docker hosts from the command line."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

from ..errors import ConfigError, VmctlError
from . import output
from .params import LazyChoice

if TYPE_CHECKING:
    from ..engine.install import Method


@click.group("docker")
def docker_group() -> None:
    """Docker Engine in VMs: install, load images, reach it from the host.

    \b
    Examples:
      vmctl docker install web
      vmctl docker make-busybox busybox.tar && vmctl docker load web busybox.tar --tag busybox:local
      eval "$(vmctl docker env web)" && docker ps
    """


@docker_group.command("install")
@click.argument("names", nargs=-1, required=True)
@click.option("--method", type=LazyChoice("vmctl.engine.install", "METHODS"), default=None,
              help="offline (host fetches packages; default without a route out), distro, docker-ce.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def install(ctx: click.Context, names: tuple[str, ...], method: str | None, as_json: bool) -> None:
    """Install Docker Engine over SSH; a working install is left as it is.

    \b
    Examples:
      vmctl docker install web
      vmctl docker install web --method docker-ce
    """
    from ..engine.install import install as do_install
    from ..machines.host import Host

    results = []
    with Host(ctx.obj["connect"]) as host:
        for name in names:
            machine = host.get(name)
            with output.progress(as_json) as progress:
                # the choice above admits exactly the install Method values
                results.append(do_install(machine, cast("Method | None", method), progress=progress).to_dict())
            machine.close()
    if as_json:
        output.emit_json(results[0] if len(results) == 1 else results)
        return
    for r in results:
        what = f"installed ({r['method']}, {r['packages']} packages)" if r["changed"] else "already installed"
        click.echo(f"{r['machine']}: Docker {r['version']} {what} in {r['seconds']:.0f}s")


@docker_group.command("load")
@click.argument("name")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tag", help="Name for the image (required for a root filesystem tar).")
@click.pass_context
def load(ctx: click.Context, name: str, archive: Path, tag: str | None) -> None:
    """Load a 'docker save' archive or a root filesystem tar into a VM's Docker.

    \b
    Examples:
      vmctl docker load web app.tar
      vmctl docker load web rootfs.tar --tag busybox:local
    """
    from ..engine.containers import load as do_load
    from ..machines.host import Host

    with Host(ctx.obj["connect"]) as host:
        machine = host.get(name)
        loaded = do_load(machine, archive, tag)
        machine.close()
    for image in loaded:
        click.echo(f"{name}: loaded {image}")


@docker_group.command("make-busybox")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def make_busybox(out: Path) -> None:
    """Write a tiny root filesystem tar (Debian's static busybox) for 'docker load --tag'.

    \b
    Example:
      vmctl docker make-busybox busybox.tar
    """
    from ..engine.containers import busybox_rootfs

    busybox_rootfs(out)
    click.echo(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


def _prepare_ssh(ctx: click.Context, name: str) -> str:
    """Write the VM's ssh entry (pinned host key) and include it from ~/.ssh/config; its alias."""
    from ..machines import sshconfig
    from ..machines.host import Host

    with Host(ctx.obj["connect"]) as host:
        machine = host.get(name)
        sshconfig.write_entry(machine)
        sshconfig.ensure_include()
        return sshconfig.alias(machine)


def _made_as_docker_host(ctx: click.Context, name: str) -> bool:
    """Whether the VM was made with --docker, so that it has a forwarded socket (a VM that got
    Docker from 'vmctl docker install', or a pool node, is reached over ssh:// instead)."""
    from ..machines.host import Host

    with Host(ctx.obj["connect"]) as host:
        return host.get(name).spec.docker


def _socket(ctx: click.Context, name: str) -> str:
    """The VM's forwarded Docker socket, its forwarder started if need be; an error says why not."""
    from ..machines.host import Host

    with Host(ctx.obj["connect"]) as host:
        machine = host.get(name)
        if not machine.spec.docker:
            raise ConfigError(f"{name} was not made as a Docker host (vmctl up --docker), so it has no Docker socket",
                              hint=f"use ssh: eval \"$(vmctl docker env {name} --ssh)\"")
        report = machine.forwarder()
        if report.get("docker", {}).get("state") != "ok":
            with output.progress(as_json=False) as progress:
                progress.phase(f"starting the forwarder of {name}")
                report = machine.forward()
        docker = report.get("docker") or {}
        if docker.get("state") != "ok":
            raise VmctlError(f"the Docker socket of {name} is not up: {docker.get('error') or docker.get('state')}",
                             hint=f"'vmctl inspect {name}' shows the forwarder; its log is "
                             f"{host.file(name, 'forward.log')}")
        return str(report["socket"])


@docker_group.command("socket")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the forwarder's report as JSON.")
@click.pass_context
def socket_(ctx: click.Context, name: str, as_json: bool) -> None:
    """Forward the VM's Docker socket to a unix socket on this host, and print its path.

    The forwarder runs in the background over one SSH connection with the
    VM's pinned host key, reconnects when the VM reboots, and stops with
    'vmctl stop' or 'vmctl down'. 'vmctl up --docker' and 'vmctl start' start
    it by themselves. The socket is mode 0660, group docker (0600 where the
    host has no docker group): like the docker group itself, access to it is
    root in the VM.

    \b
    Examples:
      vmctl docker socket web
      DOCKER_HOST=unix://$(vmctl docker socket web) docker-compose up -d
    """
    path = _socket(ctx, name)
    if as_json:
        output.emit_json({"name": name, "socket": path, "docker_host": f"unix://{path}"})
    else:
        click.echo(path)


@docker_group.command("env")
@click.argument("name")
@click.option("--ssh", "use_ssh", is_flag=True, help="DOCKER_HOST=ssh://vmctl-NAME instead of the local socket.")
@click.pass_context
def env(ctx: click.Context, name: str, use_ssh: bool) -> None:
    """Print DOCKER_HOST settings for the docker CLI (eval them).

    By default DOCKER_HOST is the VM's forwarded Docker socket (started if
    need be): each docker command then costs a local connection, not an SSH
    handshake. With --ssh it is ssh://vmctl-NAME, and 'Include' of vmctl's
    ssh entries is added to ~/.ssh/config once, so that the VM's pinned host
    key is used.

    \b
    Examples:
      eval "$(vmctl docker env web)"
      eval "$(vmctl docker env web --ssh)"
    """
    use_ssh = use_ssh or not _made_as_docker_host(ctx, name)
    host = f"ssh://{_prepare_ssh(ctx, name)}" if use_ssh else f"unix://{_socket(ctx, name)}"
    click.echo(f"export DOCKER_HOST={shlex.quote(host)}")
    click.echo(f"# run: eval \"$(vmctl docker env {name}{' --ssh' if use_ssh else ''})\"")


NO_DOCKER_CLI = "install it (apt-get install docker.io), or use 'vmctl docker env'"


@docker_group.command("context")
@click.argument("name")
@click.option("--ssh", "use_ssh", is_flag=True, help="Point the context at ssh://vmctl-NAME instead of the socket.")
@click.pass_context
def context(ctx: click.Context, name: str, use_ssh: bool) -> None:
    """Create (or update) the docker context vmctl-NAME for a VM.

    \b
    Examples:
      vmctl docker context web && docker --context vmctl-web ps
      vmctl docker context web --ssh
    """
    if shutil.which("docker") is None:
        raise ConfigError("the docker CLI is not installed", hint=NO_DOCKER_CLI)
    alias = f"vmctl-{name}"
    use_ssh = use_ssh or not _made_as_docker_host(ctx, name)
    target = f"ssh://{_prepare_ssh(ctx, name)}" if use_ssh else f"unix://{_socket(ctx, name)}"
    exists = _docker_context("inspect", alias).returncode == 0
    verb = "update" if exists else "create"
    done = _docker_context(verb, alias, "--docker", f"host={target}", "--description", f"vmctl VM {name}")
    if done.returncode != 0:
        said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise VmctlError(f"docker context {verb} failed (exit {done.returncode}): {said[-1] if said else 'no output'}")
    click.echo(f"docker context {alias} -> {target}  (docker --context {alias} ps)")


DOCKER_CLI_TIMEOUT = 30.0  # the docker CLI only edits its own config here; it never takes long


def _docker_context(*args: str) -> subprocess.CompletedProcess[str]:
    """``docker context ARGS``, bounded: a docker CLI that hangs is an error, not a wait forever."""
    try:
        return subprocess.run(["docker", "context", *args], capture_output=True, text=True,
                              timeout=DOCKER_CLI_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise VmctlError(f"'docker context {args[0]}' did not finish in {DOCKER_CLI_TIMEOUT:.0f}s",
                         hint="try 'docker context ls' by hand; 'vmctl docker env' needs no context") from e
    except FileNotFoundError as e:
        raise ConfigError("the docker CLI is not installed", hint=NO_DOCKER_CLI) from e
