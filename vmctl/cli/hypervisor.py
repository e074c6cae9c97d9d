"""``vmctl hypervisor start|stop|status``: vmctl's private libvirt runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..errors import RuntimeStateError
from . import output

if TYPE_CHECKING:
    from ..hypervisor.runtime import RuntimeStatus


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
    """Start the private runtime, or what of it is not running.

    A running runtime is left as it is. When only a daemon died, that daemon alone
    is started again, and libvirtd and the guests keep running; only when nothing
    of the runtime is left is it started afresh. It says which. Then the VMs marked
    autostart ('vmctl autostart NAME on') that are not running are started (the
    suspended ones resumed), with their Docker socket and port forwards.

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
        click.echo(start_message(status))


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
    click.echo(f"state:     {state_text(status)}")
    click.echo(f"uri:       {status.uri}")
    click.echo(f"netns:     {status.netns} ({'present' if status.netns_exists else 'absent'})")
    for daemon, pid in status.pids.items():
        click.echo(f"{daemon + ':':<10} {pid or '-'}")
    click.echo(f"guests:    {len(status.children.get('qemu', []))}")


def _joined(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _kept(status: RuntimeStatus, kept: dict[str, list[int]]) -> list[str]:
    """What runs and was (or would be) left alone: ``['libvirtd', '2 guests', '1 DHCP server']``."""
    words = [daemon for daemon in status.pids if kept.get(daemon)]
    for kind, what in (("qemu", "guest"), ("network", "DHCP server")):
        if kept.get(kind):
            words.append(_count(len(kept[kind]), what))
    return words


def start_message(status: RuntimeStatus) -> str:
    """What ``hypervisor start`` did: ``restarted virtlogd; libvirtd and 2 guests kept running: URI``."""
    where = f"{status.uri} (network namespace {status.netns})"
    also = f"\nstarted (autostart): {', '.join(status.autostarted)}" if status.autostarted else ""
    if not status.started:
        return f"runtime already running: {where}{also}"
    if not (kept := _kept(status, status.kept)):
        return f"runtime started: {where}{also}"
    return f"restarted {_joined(status.started)}; {_joined(kept)} kept running: {where}{also}"


def state_text(status: RuntimeStatus) -> str:
    """``running``, ``stopped``, or ``partly running`` and what ``hypervisor start`` would do about it."""
    from ..hypervisor.runtime import plan_start

    if status.running:
        return "running"
    try:
        plan = plan_start(status)
    except RuntimeStateError as e:
        return f"partly running: {e.message}; 'vmctl hypervisor stop' ends what is left"
    if plan.fresh:
        return "stopped"
    down = [daemon for daemon, pid in status.pids.items() if not pid]
    why = [f"{_joined(down)} {'is' if len(down) == 1 else 'are'} not running"] if down else []
    why += [f"{daemon} has no socket" for daemon in plan.stop]
    keep = _kept(status, plan.kept)
    return (f"partly running: {'; '.join(why)}; 'vmctl hypervisor start' starts {_joined(list(plan.start))} again"
            + (f"; {_joined(keep)} would keep running" if keep else ""))
