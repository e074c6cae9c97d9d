"""``vmctl snapshot create|ls|revert|rm``: a VM's snapshots."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from . import output

if TYPE_CHECKING:
    from ..machines.host import Host


def _host(ctx: click.Context) -> Host:
    from ..machines.host import Host

    return Host(ctx.obj["connect"])


@click.group("snapshot")
def snapshot_group() -> None:
    """Snapshots of a VM: its disk, and a running VM's memory.

    A snapshot of a running VM holds its memory: 'revert' brings the VM back
    running as it was then (containers, processes and all), with SSH working at
    once and the clock set to the host's. A stopped VM's snapshot is its disk.
    Snapshots live inside the VM's own disk overlay, and 'vmctl down' removes
    them with it. 'vmctl image bake --from VM' captures the VM's current state,
    not its snapshots.

    \b
    Examples:
      vmctl snapshot create web before-upgrade
      vmctl snapshot ls web --json
      vmctl snapshot revert web before-upgrade
      vmctl snapshot rm web before-upgrade
    """


def _vm_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from .machines import _names

    return _names(ctx, param, incomplete)


def _snapshot_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Complete the snapshots of the VM named before (asks libvirt only then)."""
    from ..errors import VmctlError
    from ..machines.host import Host

    try:
        with Host(ctx.find_root().params.get("connect")) as host:
            snaps = host.hv.snapshots(ctx.params["name"])
    except (VmctlError, KeyError):
        return []
    return [s["name"] for s in snaps if s["name"].startswith(incomplete)]


def _size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 2**20:.0f} MiB"


@snapshot_group.command("create")
@click.argument("name", shell_complete=_vm_names)
@click.argument("snapshot", required=False)
@click.option("--description", "-d", default="", help="A note kept with the snapshot.")
@click.option("--json", "as_json", is_flag=True, help="Print the new snapshot as JSON.")
@click.pass_context
def create(ctx: click.Context, name: str, snapshot: str | None, description: str, as_json: bool) -> None:
    """Take a snapshot of a VM (named after the time unless SNAPSHOT is given).

    \b
    Examples:
      vmctl snapshot create web
      vmctl snapshot create web clean -d "fresh install"
    """
    snapshot = snapshot or time.strftime("snap-%Y%m%d-%H%M%S")
    with _host(ctx) as host, output.progress(as_json) as progress:
        machine = host.get(name)
        progress.phase(f"taking snapshot {snapshot} of {name}"
                       + (" (memory and disk)" if machine.state == "running" else " (disk)"))
        entry = machine.snapshot(snapshot, description)
    if as_json:
        output.emit_json(entry)
    else:
        click.echo(f"{name}: snapshot {snapshot} taken ({'memory and disk' if entry['memory'] else 'disk'})")


@snapshot_group.command("ls")
@click.argument("name", shell_complete=_vm_names)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def ls(ctx: click.Context, name: str, as_json: bool) -> None:
    """List a VM's snapshots, oldest first: when, the VM's state then, memory or not.

    \b
    Example:
      vmctl snapshot ls web
    """
    with _host(ctx) as host:
        rows: list[dict[str, Any]] = host.get(name).snapshots()
    if as_json:
        output.emit_json(rows)
        return
    click.echo(f"{'SNAPSHOT':<24} {'CREATED':<20} {'STATE':<10} {'MEMORY':<10} DESCRIPTION")
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["created"]))
        mark = "*" if row["current"] else " "
        click.echo(f"{row['name'] + mark:<24} {created:<20} {row['state']:<10} {_size(row['memory_bytes']):<10} "
                   f"{row['description']}")


@snapshot_group.command("revert")
@click.argument("name", shell_complete=_vm_names)
@click.argument("snapshot", shell_complete=_snapshot_names)
@click.pass_context
def revert(ctx: click.Context, name: str, snapshot: str) -> None:
    """Return a VM to a snapshot: disk, metadata, and memory if the snapshot has it.

    \b
    Example:
      vmctl snapshot revert web before-upgrade && vmctl ssh web -- uptime
    """
    with _host(ctx) as host, output.progress(False) as progress:
        machine = host.get(name)
        progress.phase(f"reverting {name} to {snapshot}")
        machine.revert(snapshot)
        state = machine.state
    click.echo(f"{name}: reverted to {snapshot} ({state})")


@snapshot_group.command("rm")
@click.argument("name", shell_complete=_vm_names)
@click.argument("snapshots", nargs=-1, required=True, shell_complete=_snapshot_names)
@click.pass_context
def rm(ctx: click.Context, name: str, snapshots: tuple[str, ...]) -> None:
    """Delete snapshots of a VM (the VM itself is untouched).

    \b
    Example:
      vmctl snapshot rm web before-upgrade
    """
    with _host(ctx) as host:
        machine = host.get(name)
        known = {s["name"] for s in host.hv.snapshots(name)}  # (names only: no sizes read)
        if missing := [s for s in snapshots if s not in known]:  # every name checked before any is deleted
            from ..errors import NoSuchSnapshot

            raise NoSuchSnapshot(name, missing[0])
        for snapshot in snapshots:
            machine.delete_snapshot(snapshot)
            click.echo(f"{name}: snapshot {snapshot} deleted")
