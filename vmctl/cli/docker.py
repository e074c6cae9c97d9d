"""``vmctl docker install|load|make-busybox|env|context``: Docker hosts from the command line."""

from __future__ import annotations

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


@docker_group.command("env")
@click.argument("name")
@click.pass_context
def env(ctx: click.Context, name: str) -> None:
    """Print DOCKER_HOST settings for the docker CLI (eval them).

    Adds 'Include' of vmctl's ssh entries to ~/.ssh/config once, so that
    ssh://vmctl-NAME uses the VM's pinned host key.

    \b
    Example:
      eval "$(vmctl docker env web)"
    """
    alias = _prepare_ssh(ctx, name)
    click.echo(f"export DOCKER_HOST=ssh://{alias}")
    click.echo(f"# run: eval \"$(vmctl docker env {name})\"")


@docker_group.command("context")
@click.argument("name")
@click.pass_context
def context(ctx: click.Context, name: str) -> None:
    """Create (or update) the docker context vmctl-NAME for a VM.

    \b
    Example:
      vmctl docker context web && docker --context vmctl-web ps
    """
    alias = _prepare_ssh(ctx, name)
    if shutil.which("docker") is None:
        raise ConfigError("the docker CLI is not installed", hint="install it, or use 'vmctl docker env'")
    endpoint = f"host=ssh://{alias}"
    exists = subprocess.run(["docker", "context", "inspect", alias], capture_output=True).returncode == 0
    verb = ["update"] if exists else ["create"]
    done = subprocess.run(["docker", "context", *verb, alias, "--docker", endpoint,
                           "--description", f"vmctl VM {name}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise VmctlError(f"docker context {verb[0]} failed: {done.stderr.strip()}")
    click.echo(f"docker context {alias} -> ssh://{alias}  (docker --context {alias} ps)")
