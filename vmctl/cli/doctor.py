"""``vmctl doctor``: is this host ready, and which accelerator really works."""

from __future__ import annotations

import sys

import click

from . import output


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--reprobe", is_flag=True, help="Boot the probe kernel again instead of using the cached verdict.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, reprobe: bool) -> None:
    """Check QEMU, libvirt, network, storage, and which accelerator really works.

    KVM is judged by booting a kernel for a few seconds and reading its serial
    console, not by /dev/kvm existing. The verdict is cached. With --connect
    qemu+ssh://..., every check runs on that host: its sshd (host key checked),
    its QEMU, libvirt, network and storage pools, and the probe boots there.

    \b
    Examples:
      vmctl doctor
      vmctl doctor --json | jq -r .accel
      vmctl --connect qemu+ssh://root@host-b/system doctor
    """
    from ..doctor import diagnose

    with output.progress(as_json) as progress:
        report = diagnose(ctx.obj["connect"], reprobe=reprobe, progress=progress)
    if as_json:
        output.emit_json(report.to_dict())
    else:
        for check in report.checks:
            click.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:<12} {check.detail}")
            if not check.ok and check.hint:
                click.echo(f"      {'':<12} hint: {check.hint}")
        click.echo(f"accelerator: {report.accel or 'none'}")
    if not report.ok:
        sys.exit(1)
