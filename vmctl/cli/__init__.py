"""The ``vmctl`` command: a thin layer over :mod:`vmctl.api`.

It turns exceptions into one-line messages with a hint and a non-zero exit
code, draws progress on stderr, and prints JSON (and only JSON) with --json.

Each command group is a module of this package, over the shared
:mod:`vmctl.cli.output`. ``main`` knows them from the table below and imports a
module only when one of its commands runs, or shows its own help: ``vmctl
--help`` and completing a command name import none, and no command module
imports libvirt, paramiko or the Docker SDK before its command runs.
"""

from __future__ import annotations

from typing import Any

import click

from . import output
from .lazy import LazyCommand, LazyGroup

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# name -> (module, attribute, first paragraph of its help); tests/unit/test_cli.py
# resolves every entry and checks it against the command it names
COMMANDS: dict[str, LazyCommand] = {
    "apply": LazyCommand(".plan", "apply",
                         "Converge to a plan: create what is missing, leave what matches, report what differs."),
    "completion": LazyCommand(".completion", "completion", "Print the shell completion script."),
    "autostart": LazyCommand(".machines", "autostart",
                             "Start a VM whenever the runtime starts ('vmctl hypervisor start'), or not."),
    "clone": LazyCommand(".machines", "clone", "Make a new VM from a stopped VM's disk, with its own identity."),
    "console": LazyCommand(".machines", "console", "Print a VM's serial console log."),
    "cp": LazyCommand(".machines", "cp", "Copy a file between the host and a VM (NAME:PATH on one side)."),
    "destroy": LazyCommand(".plan", "destroy", "Remove every VM and pool a plan declares."),
    "docker": LazyCommand(".docker", "docker_group",
                          "Docker Engine in VMs: install, load images, reach it from the host."),
    "doctor": LazyCommand(".doctor", "doctor",
                          "Check QEMU, libvirt, network, storage, and which accelerator really works."),
    "down": LazyCommand(".machines", "down", "Destroy VMs: stop, undefine, delete disk, seed, log and keys."),
    "events": LazyCommand(".machines", "events",
                          "Print VMs' lifecycle events as they happen, until interrupted (Ctrl-C)."),
    "hypervisor": LazyCommand(".hypervisor", "hypervisor",
                              "vmctl's private libvirt runtime (libvirtd + virtlogd in their own namespace)."),
    "image": LazyCommand(".image", "image", "Base images: build locally, pull verified, list, remove."),
    "inspect": LazyCommand(".machines", "inspect",
                           "Everything vmctl knows about a VM: state, address, keys, spec, timings."),
    "lab": LazyCommand(".lab", "lab_group", "Measure VM boot, phase by phase, against container start."),
    "ls": LazyCommand(".machines", "ls", "List vmctl's VMs with their state and address."),
    "netns-proxy": LazyCommand(".machines", "netns_proxy",
                               "Pipe stdin/stdout to HOST:PORT inside NETNS (an OpenSSH ProxyCommand).",
                               hidden=True),
    "pool": LazyCommand(".pool", "pool_group",
                        "Docker Swarm host pools: VMs as Docker hosts, joined into one swarm."),
    "port": LazyCommand(".ports", "port_group", "Published ports: host ports forwarded into a VM."),
    "restart": LazyCommand(".machines", "restart", "Shut VMs down and start them again, waiting for SSH."),
    "resume": LazyCommand(".machines", "resume", "Bring suspended VMs back as they were and wait until SSH answers."),
    "set": LazyCommand(".machines", "set_", "Change a VM's vCPUs, memory or disk size, keeping everything else."),
    "snapshot": LazyCommand(".snapshot", "snapshot_group", "Snapshots of a VM: its disk, and a running VM's memory."),
    "ssh": LazyCommand(".machines", "ssh", "Log into a VM, or run CMD in it and exit with CMD's exit code."),
    "start": LazyCommand(".machines", "start", "Start stopped VMs and wait until SSH answers."),
    "stop": LazyCommand(".machines", "stop", "Shut VMs down (ACPI, then a hard stop after --timeout)."),
    "suspend": LazyCommand(".machines", "suspend",
                           "Save running VMs' memory to disk and free the host's; 'resume' brings them back."),
    "up": LazyCommand(".machines", "up", "Create VMs, boot them, and wait until they can be logged into."),
}


class VmctlGroup(LazyGroup):
    """The root group: lazy subcommands, and every :class:`~vmctl.errors.VmctlError` as
    ``error: ...`` plus ``hint: ...`` and exit 1 (see :func:`output.exit_on_error`);
    a usage error (unknown command, missing argument, bad option value) the same way."""

    def invoke(self, ctx: click.Context) -> Any:
        with output.exit_on_error():
            try:
                return super().invoke(ctx)
            except click.UsageError as e:
                output.usage_error(e)


@click.group(cls=VmctlGroup, context_settings=CONTEXT, lazy=COMMANDS, package=__name__)
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
