"""``vmctl apply FILE`` and ``vmctl destroy FILE``: converge to a plan file, or tear it down."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import output

if TYPE_CHECKING:
    from ..plan import Outcome


def _report(outcomes: list[Outcome], as_json: bool) -> None:
    """What happened to each item; exit 1 if any failed, after the others are shown."""
    if as_json:
        output.emit_json([o.to_dict() for o in outcomes])
    else:
        for o in outcomes:
            click.echo(f"{o.kind:<5} {o.name:<20} {o.action:<10} {o.detail}")
    if any(o.action == "failed" for o in outcomes):
        sys.exit(1)


@click.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what happened to each item as JSON.")
@click.pass_context
def apply(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Converge to a plan: create what is missing, leave what matches, report what differs.

    \b
    Example:
      vmctl apply plan.yaml
    """
    from ..plan import apply as do_apply
    from ..plan import load

    plan = load(file)
    with output.progress(as_json) as progress:
        outcomes = do_apply(plan, ctx.obj["connect"], progress)
    _report(outcomes, as_json)


@click.command("destroy")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print what happened to each item as JSON.")
@click.pass_context
def destroy(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Remove every VM and pool a plan declares.

    \b
    Example:
      vmctl destroy plan.yaml
    """
    from ..plan import load, teardown

    _report(teardown(load(file), ctx.obj["connect"]), as_json)
