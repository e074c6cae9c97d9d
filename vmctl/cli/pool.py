"""``vmctl pool up|ls|status|env|scale|down``: Docker Swarm pools from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from . import output

if TYPE_CHECKING:
    from .._core.progress import Progress
    from ..swarm.pool import Pool


def _pool(ctx: click.Context, name: str, progress: Progress | None = None) -> Pool:
    from .._core.progress import NoProgress
    from ..swarm.pool import Pool

    return Pool(ctx.obj["connect"], name, progress or NoProgress())


def _print_status(status: dict[str, Any]) -> None:
    click.echo(f"pool {status['name']}: {status['size']} node(s)")
    for h in status["hosts"]:
        if not h["reachable"]:
            click.echo(f"  host {h['host']} is unreachable: {h['error']}")
    click.echo(f"  {'NODE':<20} {'HOST':<16} {'VM':<9} {'IP':<16} {'ROLE':<8} {'MANAGER':<10} {'AVAIL':<7} "
               f"{'STATUS':<8} ENGINE")
    for n in status["nodes"]:
        click.echo(f"  {n['name']:<20} {n['host']:<16} {n['vm_state']:<9} {n['ip'] or '-':<16} {n['role'] or '-':<8} "
                   f"{n['manager_status'] or '-':<10} {n['availability'] or '-':<7} {n['status']:<8} "
                   f"{n['engine'] or '-'}")


@click.group("pool")
def pool_group() -> None:
    """Docker Swarm host pools: VMs as Docker hosts, joined into one swarm.

    \b
    Examples:
      vmctl pool up swarm --size 3 --managers 1
      vmctl pool status swarm
      eval "$(vmctl pool env swarm)" && docker node ls
      vmctl pool scale swarm --size 2
      vmctl pool down swarm
      vmctl pool up wide --size 3 --hosts local,qemu+ssh://root@host-b/system=2
    """


@pool_group.command("up")
@click.argument("name")
@click.option("--size", type=int, default=2, show_default=True, help="Number of nodes.")
@click.option("--managers", type=int, default=1, show_default=True, help="How many of them are managers.")
@click.option("--image", default="debian-12", show_default=True,
              help="Base image; IMAGE-docker is used instead when such a baked image exists.")
@click.option("--cpus", type=int, default=2, show_default=True)
@click.option("--memory", type=int, default=1024, show_default=True, help="MiB per node.")
@click.option("--hosts", "hosts", multiple=True, metavar="URI[=WEIGHT],...",
              help="Spread the nodes over these hypervisors, by weight (default 1); 'local' is the one "
              "--connect names. Each gets a /24 of --range, and routes to the others'.")
@click.option("--range", "cidr", default="", metavar="CIDR",
              help="The network range of a pool over --hosts.  [default: 10.77.0.0/16]")
@click.option("--json", "as_json", is_flag=True, help="Print the pool status as JSON.")
@click.pass_context
def up(ctx: click.Context, name: str, size: int, managers: int, image: str, cpus: int, memory: int,
       hosts: tuple[str, ...], cidr: str, as_json: bool) -> None:
    """Create a pool (in parallel), init Swarm on the first manager, join and label the rest.

    Re-running converges: existing nodes are kept, missing ones made and joined. With
    --hosts, nodes are placed by weight (managers spread first), each host gets its own
    network with a /24 of --range, and each host a route to the others' (over the
    network the hosts share); nodes are labelled vmctl.host.

    \b
    Examples:
      vmctl pool up swarm --size 2
      vmctl pool up wide --size 3 --managers 3 \\
          --hosts local,qemu+ssh://root@host-b/system,qemu+ssh://root@host-c/system
    """
    from ..swarm.pool import PoolSpec

    spec = PoolSpec(name, size, managers, image, cpus, memory, hosts, cidr)  # type: ignore[arg-type]
    with output.progress(as_json) as progress:
        status = _pool(ctx, name, progress).up(spec)
    output.emit_json(status.to_dict()) if as_json else _print_status(status.to_dict())


@pool_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List pools and their nodes.

    \b
    Example:
      vmctl pool ls --json
    """
    from ..swarm.pool import pools

    found = pools(ctx.obj["connect"])
    if as_json:
        output.emit_json([{"name": k, "size": len(v), "nodes": v} for k, v in found.items()])
        return
    click.echo(f"{'POOL':<20} {'SIZE':>4}  NODES")
    for name, nodes in found.items():
        click.echo(f"{name:<20} {len(nodes):>4}  {' '.join(nodes)}")


@pool_group.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a 'nodes' list).")
@click.pass_context
def status(ctx: click.Context, name: str, as_json: bool) -> None:
    """Every node: VM state, Swarm role, availability, reachability, engine version.

    \b
    Example:
      vmctl pool status swarm --json | jq '.nodes[] | {name, role, status}'
    """
    result = _pool(ctx, name).status().to_dict()
    output.emit_json(result) if as_json else _print_status(result)


@pool_group.command("env")
@click.argument("name")
@click.pass_context
def env(ctx: click.Context, name: str) -> None:
    """Print DOCKER_HOST of a reachable manager (eval it).

    \b
    Example:
      eval "$(vmctl pool env swarm)" && docker service ls
    """
    from ..machines import sshconfig

    with _pool(ctx, name).reachable_manager() as manager:  # the name is checked before anything is opened
        sshconfig.write_entry(manager)
        sshconfig.ensure_include()
        click.echo(f"export DOCKER_HOST=ssh://{sshconfig.alias(manager)}")


@pool_group.command("scale")
@click.argument("name")
@click.option("--size", type=int, required=True, help="The new number of nodes.")
@click.option("--json", "as_json", is_flag=True, help="Print the pool status as JSON.")
@click.pass_context
def scale(ctx: click.Context, name: str, size: int, as_json: bool) -> None:
    """Grow (create and join) or shrink (drain, leave, delete) a pool.

    \b
    Example:
      vmctl pool scale swarm --size 3
    """
    with output.progress(as_json) as progress:
        result = _pool(ctx, name, progress).scale(size).to_dict()
    output.emit_json(result) if as_json else _print_status(result)


@pool_group.command("down")
@click.argument("name")
@click.pass_context
def down(ctx: click.Context, name: str) -> None:
    """Destroy every VM of the pool (disks, seeds, libvirt domains).

    \b
    Example:
      vmctl pool down swarm
    """
    for node in _pool(ctx, name).down():
        click.echo(f"removed {node}")
