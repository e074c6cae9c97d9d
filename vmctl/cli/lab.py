"""``vmctl lab boot|plot``: the boot-time lab from the command line."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, VmctlError
from . import output
from .params import LazyChoice


@click.group("lab")
def lab_group() -> None:
    """Measure VM boot, phase by phase, against container start.

    \b
    Examples:
      vmctl lab boot --runs 3 --profile stock --profile fast --json lab.json --plot lab.png
      vmctl lab boot --image dockerhost-baked --containers 10
      vmctl lab plot lab.json -o lab.png
      vmctl lab pool --sizes 1,2,3,4 --json pool.json
    """


def _check_output(path: str | None, what: str, stdout_ok: bool = False) -> None:
    """Refuse an output file that cannot be written, before anything boots."""
    if path == "-" and not stdout_ok:
        raise ConfigError(f"the {what} is a PNG image and cannot go to standard output",
                          hint="give a file name, e.g. lab.png")
    if path and path != "-":
        parent = Path(path).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ConfigError(f"cannot write the {what} to {path}: {parent} is not a writable directory")


def _write(path: str, data: bytes) -> None:
    """Write the whole file or nothing (a failed run never leaves half a chart)."""
    from .._core.locks import replacing

    with replacing(Path(path)) as f:
        f.write(data)


@lab_group.command("boot")
@click.option("--runs", type=int, default=3, show_default=True, help="VMs to boot per profile.")
@click.option("--image", default="debian-12", show_default=True,
              help="Base image (a baked Docker image times containers).")
@click.option("--profile", "profiles", multiple=True, type=LazyChoice("vmctl.model.profiles", "PROFILES"),
              help="Boot profile to measure (repeatable; runs of several profiles interleave). "
                   "Default: the image's, as up picks it (fast where the image can boot it).")
@click.option("--docker", is_flag=True, help="Install Docker in each VM and time it ('Docker ready').")
@click.option("--containers", type=int, default=5, show_default=True,
              help="docker run --rm per VM and on the host (0: none).")
@click.option("--warm", is_flag=True, help="Also time a warm start: managed save, restore, SSH login.")
@click.option("--cpus", type=int, default=2, show_default=True, help="vCPUs per VM.")
@click.option("--memory", type=int, default=1024, show_default=True, help="Memory per VM in MiB.")
@click.option("--json", "json_out", metavar="FILE",
              help="Write the results as JSON to FILE ('-': only JSON on stdout).")
@click.option("--plot", "plot_out", metavar="FILE.png", help="Draw the results as a PNG chart.")
@click.pass_context
def boot(ctx: click.Context, runs: int, image: str, profiles: tuple[str, ...], docker: bool, containers: int,
         warm: bool, cpus: int, memory: int, json_out: str | None, plot_out: str | None) -> None:
    """Boot VMs and record when each phase ended, then time containers.

    Phases: define, QEMU started, kernel started and userspace reached (from
    the serial console), address, SSH banner, SSH login, guest set up
    (cloud-init, or the fast profile's units), Docker ready (with --docker),
    and ready: when up returned, what a user waits for. Inside each guest it
    records systemd-analyze and cloud-init analyze blame. Every VM it makes is
    removed again.

    \b
    Examples:
      vmctl lab boot --runs 1
      vmctl lab boot --runs 5 --profile stock --profile fast --json lab.json --plot lab.png
      vmctl lab boot --image e2e-docker-baked --containers 10 --warm --json -
    """
    from ..lab.data import table
    from ..lab.run import LabConfig, run_lab
    from ..machines.host import Host

    config = LabConfig(runs=runs, image=image, profiles=profiles, docker=docker,
                       containers=containers, warm=warm, cpus=cpus, memory_mib=memory)
    _check_output(json_out, "results", stdout_ok=True)
    _check_output(plot_out, "chart")
    if plot_out:
        from ..lab.plot import require_matplotlib

        require_matplotlib()
    quiet = json_out == "-"
    with Host(ctx.find_root().obj["connect"]) as host, output.progress(quiet) as progress:
        result = run_lab(host, config, progress, command=shlex.join(["vmctl", *sys.argv[1:]]))
    if json_out and not quiet:
        _write(json_out, json.dumps(result, indent=2).encode() + b"\n")
    if plot_out:
        from ..lab.plot import plot

        _write(plot_out, plot([result]))
    if quiet:
        output.emit_json(result)
    else:
        for line in table(result):
            click.echo(line)
        for path in (json_out, plot_out):
            if path:
                click.echo(f"wrote {path}")
    if failed := [r for r in result["runs"] if r.get("error")]:
        raise VmctlError(f"{len(failed)} of {len(result['runs'])} lab runs failed; the results hold the others",
                         hint=f"first failure ({failed[0]['profile']} run {failed[0]['run']}): {failed[0]['error']}; "
                              "the table above shows each failure with its console")


def _sizes(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers, e.g. 1,2,3,4") from None


@lab_group.command("pool")
@click.option("--sizes", default="1,2,3,4", show_default=True, callback=_sizes,
              help="How many VMs to start at once, one pool after another.")
@click.option("--image", default="debian-12", show_default=True, help="Base image.")
@click.option("--profile", type=LazyChoice("vmctl.model.profiles", "PROFILES"), default=None,
              help="Boot profile (default: the image's, as up picks it).")
@click.option("--idle", type=float, default=60, show_default=True,
              help="Seconds the VMs idle before QEMU's memory is read.")
@click.option("--cpus", type=int, default=1, show_default=True, help="vCPUs per VM.")
@click.option("--memory", type=int, default=1024, show_default=True, help="Memory per VM in MiB.")
@click.option("--json", "json_out", metavar="FILE",
              help="Write the results as JSON to FILE ('-': only JSON on stdout).")
@click.pass_context
def pool_cmd(ctx: click.Context, sizes: tuple[int, ...], image: str, profile: str | None, idle: float, cpus: int,
             memory: int, json_out: str | None) -> None:
    """Start 1, 2, 3, ... VMs at once: each one's ready time, the pool's, and the
    host memory each idle VM's QEMU holds (RSS, PSS) against what it was given.

    \b
    Examples:
      vmctl lab pool
      vmctl lab pool --sizes 1,3 --image e2e-docker-baked --idle 30 --json -
    """
    from ..lab.data import pool_table
    from ..lab.pool import PoolLabConfig, run_pool_lab
    from ..machines.host import Host

    config = PoolLabConfig(sizes=sizes, image=image, profile=profile or "", idle=idle, cpus=cpus, memory_mib=memory)
    _check_output(json_out, "results", stdout_ok=True)
    quiet = json_out == "-"
    with Host(ctx.find_root().obj["connect"]) as host, output.progress(quiet) as progress:
        result = run_pool_lab(host, config, progress, command=shlex.join(["vmctl", *sys.argv[1:]]))
    if quiet:
        output.emit_json(result)
    else:
        if json_out:
            _write(json_out, json.dumps(result, indent=2).encode() + b"\n")
        for line in pool_table(result):
            click.echo(line)
    if failed := [(vm, e) for size in result["sizes"] for vm, e in size["errors"].items()]:
        raise VmctlError(f"{len(failed)} VM(s) of the pool lab failed; the results hold the others",
                         hint=f"first failure ({failed[0][0]}): {failed[0][1]}")


@lab_group.command("plot")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, metavar="FILE.png", help="Where to write the chart.")
def plot_cmd(results: tuple[str, ...], output: str) -> None:
    """Chart one or more saved results (all from the same accelerator).

    \b
    Example:
      vmctl lab plot lab.json -o docs/lab.png
    """
    from ..lab.plot import check_result, plot, require_matplotlib

    _check_output(output, "chart")
    require_matplotlib()
    data: list[dict[str, Any]] = []
    for path in results:
        try:
            data.append(check_result(json.loads(Path(path).read_text()), path))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path} is not a lab result: {e}",
                              hint="make one with 'vmctl lab boot --json FILE'") from e
    _write(output, plot(data))
    click.echo(f"wrote {output}")
