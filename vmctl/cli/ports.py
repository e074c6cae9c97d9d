"""``vmctl port ls|add|rm``: a VM's published ports."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from . import output

if TYPE_CHECKING:
    from ..machines.host import Host


def _host(ctx: click.Context) -> Host:
    from ..machines.host import Host

    return Host(ctx.obj["connect"])


@click.group("port")
def port_group() -> None:
    """Published ports: host ports forwarded into a VM.

    A port listens on 127.0.0.1 unless an address is given. On a Docker host,
    ports that containers publish ('docker run -p 8080:80') are forwarded by
    themselves while the container runs.

    \b
    Examples:
      vmctl port add web 8080:80
      vmctl port add web 0.0.0.0:5353:53/udp
      vmctl port ls web --json
      vmctl port rm web 8080
    """


@port_group.command("ls")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def ls(ctx: click.Context, name: str, as_json: bool) -> None:
    """List a VM's forwards: its own (static) and its containers' (docker).

    \b
    Example:
      vmctl port ls web
    """
    from ..machines import ports

    with _host(ctx) as host:
        rows = ports.published(host.get(name))
    if as_json:
        output.emit_json(rows)
        return
    click.echo(f"{'PORT':<32} {'SOURCE':<8} {'STATE':<10} ERROR")
    for row in rows:
        click.echo(f"{row['port']:<32} {row['source']:<8} {row['state']:<10} {row.get('error') or ''}")


@port_group.command("add")
@click.argument("name")
@click.argument("specs", nargs=-1, required=True, metavar="[ADDR:]HOSTPORT:GUESTPORT[/udp]...")
@click.pass_context
def add(ctx: click.Context, name: str, specs: tuple[str, ...]) -> None:
    """Publish ports of a VM; all of them listen, or none is added.

    \b
    Examples:
      vmctl port add web 8080:80
      vmctl port add web 8443:443 127.0.0.1:5353:53/udp
    """
    from ..machines import ports

    with _host(ctx) as host, output.progress(as_json=False) as progress:
        progress.phase(f"publishing on {name}")
        added = ports.add(host.get(name), list(specs))
    for port in added:
        click.echo(f"{name}: {port}")


@port_group.command("rm")
@click.argument("name")
@click.argument("specs", nargs=-1, required=True, metavar="HOSTPORT[/udp]|SPEC...")
@click.pass_context
def rm(ctx: click.Context, name: str, specs: tuple[str, ...]) -> None:
    """Stop publishing ports of a VM.

    \b
    Examples:
      vmctl port rm web 8080
      vmctl port rm web 5353/udp
    """
    from ..machines import ports

    with _host(ctx) as host:
        removed = ports.remove(host.get(name), list(specs))
    for port in removed:
        click.echo(f"{name}: {port} removed")
