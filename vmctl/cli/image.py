"""``vmctl image build|pull|test|ls|rm|bake``: base images from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click

from ..errors import ConfigError, VmctlError
from . import output

if TYPE_CHECKING:
    from ..model.spec import BootMode


def _image_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Complete the names of the image definitions (the catalog reads YAML, not libvirt)."""
    try:
        from ..images.catalog import definitions

        return [n for n in definitions() if n.startswith(incomplete)]
    except VmctlError:
        return []


@click.group()
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


@image.command("build")
@click.argument("name", shell_complete=_image_names)
@click.option("--json", "as_json", is_flag=True, help="Print the image record as JSON.")
def image_build(name: str, as_json: bool) -> None:
    """Build image NAME from its recipe (mmdebstrap from the Debian mirror).

    \b
    Example:
      vmctl image build debian-12
    """
    from .. import api

    with output.progress(as_json) as progress:
        img = api.image_build(name, progress)
    output.image_done(img, as_json)


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
    from .. import api

    with output.progress(as_json) as progress:
        img = api.image_pull(name, progress)
    output.image_done(img, as_json)


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
    from .. import api

    with output.progress(as_json) as progress:
        # click.Choice above admits exactly the BootMode values
        report = api.image_test(name, cast("BootMode", boot), timeout, ctx.obj["connect"], progress)
    if as_json:
        output.emit_json(report.to_dict())
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
    from .. import api

    images = api.image_list()
    stale = {i.name: api.image_stale(i) for i in images}
    if as_json:
        output.emit_json([{**i.to_dict(), "stale": stale[i.name]} for i in images])
        return
    click.echo(f"{'NAME':<16} {'SOURCE':<9} {'SIZE':>9}  {'SHA256':<14} PATH")
    for i in images:
        note = f"  (stale: {stale[i.name]})" if stale[i.name] else ""
        click.echo(f"{i.name:<16} {i.source:<9} {i.size / 2**20:>5.0f} MiB  {i.sha256[:12]:<14} {i.path}{note}")


@image.command("rm")
@click.argument("names", nargs=-1, required=True, shell_complete=_image_names)
@click.option("--force", is_flag=True,
              help="Remove it even if VMs still boot from it (they will not start again).")
@click.pass_context
def image_rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove cached images (disk, kernel, initrd, record).

    An image that VMs still boot from is kept, and the VMs are named: delete
    them first, or pass --force.

    \b
    Examples:
      vmctl image rm debian-12
      vmctl image rm debian-12-docker --force
    """
    from .. import api

    for name in api.images_remove(list(names), force=force, uri=ctx.obj["connect"]):
        click.echo(f"removed {name}")


@image.command("bake")
@click.argument("new")
@click.option("--from", "source", metavar="VM", help="The provisioned VM to capture (left stopped).")
@click.option("--from-image", metavar="IMAGE", help="Start from a base image instead (with --docker).")
@click.option("--docker", is_flag=True, help="With --from-image: install Docker before baking.")
@click.option("--json", "as_json", is_flag=True, help="Print the new image record as JSON.")
@click.pass_context
def bake(ctx: click.Context, new: str, source: str | None, from_image: str | None, docker: bool, as_json: bool) -> None:
    """Capture a VM as a new base image (generalised: cloud-init reset, no identity).

    With --from-image, the VM is a temporary one, bake-NEW, deleted afterwards
    (and by the next bake, if this one is killed).

    \b
    Examples:
      vmctl image bake docker-12 --from web
      vmctl image bake docker-12 --from-image debian-12 --docker
    """
    if bool(source) == bool(from_image):
        raise ConfigError("give exactly one of --from VM and --from-image IMAGE")
    from ..machines.bake import bake as do_bake
    from ..machines.bake import bake_from_image
    from ..machines.host import Host
    from ..model.spec import check_name

    check_name(new, "image name")
    if from_image:
        check_name(from_image, "image name")
    with Host(ctx.obj["connect"]) as host, output.progress(as_json) as progress:
        if source:
            image = do_bake(host.get(source), new, progress=progress)
        else:
            image = bake_from_image(host, new, str(from_image), docker, progress=progress)
    output.image_done(image, as_json)
