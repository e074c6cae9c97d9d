"""``vmctl hypervisor start|stop|status``: vmctl's private libvirt runtime."""

from __future__ import annotations

import click

from . import output


@click.group()
def hypervisor() -> None:
    """vmctl's private libvirt runtime (libvirtd + virtlogd in their own namespace).

    \b
    Examples:
      vmctl hypervisor start
      vmctl hypervisor status --json
      vmctl hypervisor stop
    """


@hypervisor.command("start")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def hypervisor_start(as_json: bool) -> None:
    """Start the private runtime; a running one is left as it is.

    \b
    Example:
      vmctl hypervisor start && virsh -c "$(vmctl hypervisor status --json | jq -r .uri)" list
    """
    from .. import api

    with output.progress(as_json) as progress:
        status = api.hypervisor_start(progress)
    if as_json:
        output.emit_json(status.to_dict())
    else:
        click.echo(f"runtime running: {status.uri} (network namespace {status.netns})")


@hypervisor.command("stop")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def hypervisor_stop(as_json: bool) -> None:
    """Stop the runtime's guests and daemons (by PID) and remove its namespace.

    \b
    Example:
      vmctl hypervisor stop
    """
    from .. import api

    status = api.hypervisor_stop()
    if as_json:
        output.emit_json(status.to_dict())
    else:
        click.echo("runtime stopped")


@hypervisor.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def hypervisor_status(as_json: bool) -> None:
    """Show whether the runtime runs, its URI, namespace and processes.

    \b
    Example:
      vmctl hypervisor status --json
    """
    from .. import api

    status = api.hypervisor_status()
    if as_json:
        output.emit_json(status.to_dict())
        return
    click.echo(f"state:     {'running' if status.running else 'stopped'}")
    click.echo(f"uri:       {status.uri}")
    click.echo(f"netns:     {status.netns} ({'present' if status.netns_exists else 'absent'})")
    for daemon, pid in status.pids.items():
        click.echo(f"{daemon + ':':<10} {pid or '-'}")
    click.echo(f"guests:    {len(status.children.get('qemu', []))}")
