"""The ``vmctl`` command: a thin layer over :mod:`vmctl.api`.

It turns exceptions into one-line messages with a hint and a non-zero exit
code, draws progress on stderr, and prints JSON (and only JSON) with --json.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from typing import Any, ContextManager

import click

from .. import api
from ..errors import VmctlError
from .._core.progress import NoProgress
from .progress import TerminalProgress

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _progress(as_json: bool) -> ContextManager[Any]:
    return nullcontext(NoProgress()) if as_json else TerminalProgress()


def _image_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        from ..images.catalog import definitions

        return [n for n in definitions() if n.startswith(incomplete)]
    except VmctlError:
        return []


class VmctlGroup(click.Group):
    """Turns a :class:`VmctlError` into ``error: ...`` plus ``hint: ...`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VmctlError as e:
            click.echo(f"error: {e.message}", err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=VmctlGroup, context_settings=CONTEXT)
@click.option(
    "--connect", "-c", envvar="VMCTL_CONNECT", metavar="URI",
    help="libvirt URI (default: vmctl's runtime when running, else qemu:///system).",
)
@click.version_option(package_name="vmctl")
@click.pass_context
def main(ctx: click.Context, connect: str | None) -> None:
    """vmctl turns a Linux host with QEMU and libvirt into Docker host VMs.

    \b
    Examples:
      vmctl hypervisor start          # a private libvirtd in an isolated namespace
      vmctl image build debian-12     # a base image from the Debian mirror
      vmctl doctor                    # is this host ready? kvm or tcg?
    """
    ctx.obj = {"connect": connect}


# hypervisor ------------------------------------------------------------------


@main.group(cls=VmctlGroup)
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
    with _progress(as_json) as progress:
        status = api.hypervisor_start(progress)
    if as_json:
        _emit_json(status.to_dict())
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
    status = api.hypervisor_stop()
    if as_json:
        _emit_json(status.to_dict())
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
    status = api.hypervisor_status()
    if as_json:
        _emit_json(status.to_dict())
        return
    click.echo(f"state:     {'running' if status.running else 'stopped'}")
    click.echo(f"uri:       {status.uri}")
    click.echo(f"netns:     {status.netns} ({'present' if status.netns_exists else 'absent'})")
    for daemon, pid in status.pids.items():
        click.echo(f"{daemon + ':':<10} {pid or '-'}")
    click.echo(f"guests:    {len(status.children.get('qemu', []))}")


# doctor ----------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--reprobe", is_flag=True, help="Boot the probe kernel again instead of using the cached verdict.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, reprobe: bool) -> None:
    """Check QEMU, libvirt, network, storage, and which accelerator really works.

    KVM is judged by booting a kernel for a few seconds and reading its serial
    console, not by /dev/kvm existing. The verdict is cached.

    \b
    Examples:
      vmctl doctor
      vmctl doctor --json | jq -r .accel
    """
    from ..doctor import diagnose

    with _progress(as_json) as progress:
        report = diagnose(ctx.obj["connect"], reprobe=reprobe, progress=progress)
    if as_json:
        _emit_json(report.to_dict())
    else:
        for check in report.checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<12} {check.detail}")
            if not check.ok and check.hint:
                click.echo(f"      {'':<12} hint: {check.hint}")
        click.echo(f"accelerator: {report.accel or 'none'}")
    if not report.ok:
        sys.exit(1)


# images ----------------------------------------------------------------------


@main.group(cls=VmctlGroup)
def image() -> None:
    """Base images: build locally, pull verified, list, remove.

    The cache is /var/cache/vmctl/images (root) or ~/.cache/vmctl/images;
    set VMCTL_CACHE_DIR to move it. Definitions live in images/*.yaml, and in
    the directories listed in VMCTL_IMAGE_PATH.

    \b
    Examples:
      vmctl image build debian-12
      vmctl image ls --json
      vmctl image rm debian-12
    """


def _image_done(img: Any, as_json: bool) -> None:
    if as_json:
        _emit_json(img.to_dict())
    else:
        click.echo(f"{img.name}: {img.path} ({img.size / 2**20:.0f} MiB, sha256 {img.sha256[:12]})")


@image.command("build")
@click.argument("name", shell_complete=_image_names)
@click.option("--json", "as_json", is_flag=True, help="Print the image record as JSON.")
def image_build(name: str, as_json: bool) -> None:
    """Build image NAME from its recipe (mmdebstrap from the Debian mirror).

    \b
    Example:
      vmctl image build debian-12
    """
    with _progress(as_json) as progress:
        img = api.image_build(name, progress)
    _image_done(img, as_json)


@image.command("pull")
@click.argument("name", shell_complete=_image_names)
@click.option("--json", "as_json", is_flag=True, help="Print the image record as JSON.")
def image_pull(name: str, as_json: bool) -> None:
    """Download image NAME, verified against its published checksum list.

    An interrupted download resumes where it stopped; a checksum mismatch
    discards the file.

    \b
    Example:
      vmctl image pull debian-12
    """
    with _progress(as_json) as progress:
        img = api.image_pull(name, progress)
    _image_done(img, as_json)


@image.command("test")
@click.argument("name", shell_complete=_image_names)
@click.option("--boot", type=click.Choice(["disk", "kernel"]), default="disk", show_default=True,
              help="Boot through firmware and the image's boot loader, or its kernel directly.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300, show_default=True,
              help="Seconds to wait for the login prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print the boot report as JSON.")
@click.pass_context
def image_test(ctx: click.Context, name: str, boot: str, timeout: float, as_json: bool) -> None:
    """Boot image NAME once, watch its serial console reach a login prompt, clean up.

    \b
    Examples:
      vmctl image test debian-12
      vmctl image test debian-12 --boot kernel --json
    """
    with _progress(as_json) as progress:
        report = api.image_test(name, boot, timeout, ctx.obj["connect"], progress)  # type: ignore[arg-type]
    if as_json:
        _emit_json(report.to_dict())
        return
    marks = ", ".join(f"{k} {v:.1f}s" for k, v in report.milestones.items())
    click.echo(f"{name} booted ({report.boot} boot, {report.accel}): {marks}")


@image.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def image_ls(as_json: bool) -> None:
    """List the cached images. A baked image whose parent was rebuilt since is
    marked stale: bake it again to pick up the new base.

    \b
    Example:
      vmctl image ls --json
    """
    images = api.image_list()
    stale = {i.name: api.image_stale(i) for i in images}
    if as_json:
        _emit_json([{**i.to_dict(), "stale": stale[i.name]} for i in images])
        return
    click.echo(f"{'NAME':<16} {'SOURCE':<9} {'SIZE':>9}  {'SHA256':<14} PATH")
    for i in images:
        note = f"  (stale: {stale[i.name]})" if stale[i.name] else ""
        click.echo(f"{i.name:<16} {i.source:<9} {i.size / 2**20:>5.0f} MiB  {i.sha256[:12]:<14} {i.path}{note}")


@image.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=_image_names)
def image_rm(names: tuple[str, ...]) -> None:
    """Remove cached images (disk, kernel, initrd, record).

    \b
    Example:
      vmctl image rm debian-12
    """
    for name in names:
        api.image_remove(name)
        click.echo(f"removed {name}")


from .machines import COMMANDS as _MACHINE_COMMANDS  # noqa: E402
from .lab import lab_group as _lab_group  # noqa: E402

from .docker import bake as _bake  # noqa: E402
from .docker import docker_group as _docker_group  # noqa: E402
from .pool import apply as _apply  # noqa: E402
from .pool import destroy as _destroy  # noqa: E402
from .pool import pool_group as _pool_group  # noqa: E402

for _command in _MACHINE_COMMANDS:
    main.add_command(_command)
main.add_command(_docker_group)
main.add_command(_pool_group)
main.add_command(_lab_group)
main.add_command(_apply)
main.add_command(_destroy)
image.add_command(_bake)


# completion --------------------------------------------------------------------


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script.

    \b
    Example:
      eval "$(vmctl completion bash)"
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "vmctl", "_VMCTL_COMPLETE").source())


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="vmctl")
