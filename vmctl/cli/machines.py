"""``vmctl up|ls|inspect|ssh|cp|console|stop|start|suspend|resume|restart|autostart|events|down``: VMs
from the command line.

Also the hidden ``vmctl netns-proxy`` (see :mod:`vmctl._core.proxy`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConfigError, VmctlError
from . import output
from .params import LazyChoice

if TYPE_CHECKING:
    from .._core.progress import Progress
    from ..machines.host import Host
    from ..machines.machine import Machine
    from ..model.spec import MachineSpec


def _host(ctx: click.Context) -> Host:
    """The Host of ``--connect``; imported here so that help and completion do not load libvirt."""
    from ..machines.host import Host

    return Host(ctx.obj["connect"])


def _names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Complete VM names: asks libvirt, so only when a VM name is being completed."""
    try:
        from ..machines.host import Host

        with Host(ctx.find_root().params.get("connect")) as host:
            return [n for n in host.hv.domains() if n.startswith(incomplete)]
    except VmctlError:
        return []


def _spec(name: str, opts: dict[str, Any]) -> MachineSpec:
    from ..guest.keys import read_public_key
    from ..model.spec import MachineSpec

    keys = tuple(read_public_key(Path(p)) for p in opts["ssh_key"])
    user_data = ""
    if opts["user_data"]:
        try:
            user_data = Path(opts["user_data"]).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read user-data file {opts['user_data']}: {e.strerror}") from e
    return MachineSpec(
        name=name, image=opts["image"], cpus=opts["cpus"], memory_mib=opts["memory"],
        disk_gib=opts["disk"], boot=opts["boot"], network=opts["network"], user=opts["user"],
        ssh_keys=keys, user_data=user_data, docker=opts["docker"], profile=opts["profile"] or "",
        ports=tuple(opts["ports"]), mounts=tuple(opts["mounts"]),
    )


def _up_one(uri: str | None, spec: MachineSpec, progress: Progress, keep: bool, autostart: bool) -> dict[str, Any]:
    from ..machines.host import Host

    with Host(uri) as host:
        machine = host.up(spec, progress=progress, keep_on_failure=keep)
        if autostart:
            machine.set_autostart(True)
        data = machine.to_dict()
        machine.close()
        return data


def _summary(data: dict[str, Any]) -> str:
    took = data["timings"].get("total")
    return (f"{data['name']} is up: {data['ip']} (user {data['user']}"
            + (f", {took:.0f}s" if took else "") + f")\n  log in: vmctl ssh {data['name']}")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--image", default="debian-12", show_default=True, help="Base image (see 'vmctl image ls').")
@click.option("--cpus", type=int, default=2, show_default=True, help="vCPUs.")
@click.option("--memory", type=int, default=1024, show_default=True, help="Memory in MiB.")
@click.option("--disk", type=int, default=10, show_default=True, help="Disk size in GiB (grown at first boot).")
@click.option("--boot", type=click.Choice(["disk", "kernel"]), default=None,
              help="Firmware + the image's boot loader, or direct kernel boot (default: the profile's).")
@click.option("--profile", type=LazyChoice("vmctl.model.profiles", "PROFILES"), default=None,
              help="Boot profile: stock (the image as it is) or fast (direct kernel boot, ready without waiting "
                   "for cloud-init; see docs/lab.md). Default: fast where the image can boot it (local builds "
                   "and bakes), stock for pulled cloud images; an existing VM keeps its own.")
@click.option("--network", default="vmctl", show_default=True,
              help="NAME or network:NAME (libvirt network), bridge:BRIDGE, or user.")
@click.option("--user", default=None, help="Login user (default: the image's).")
@click.option("--user-data", type=click.Path(dir_okay=False), help="Extra cloud-config merged into vmctl's.")
@click.option("--ssh-key", multiple=True, type=click.Path(dir_okay=False),
              help="A public key file to authorise as well (repeatable).")
@click.option("--docker", is_flag=True, help="Install Docker Engine (a baked image makes this a quick check).")
@click.option("--publish", "-p", "ports", multiple=True, metavar="[ADDR:]HOSTPORT:GUESTPORT[/udp]",
              help="Forward a host port (on 127.0.0.1 unless ADDR is given) to the VM (repeatable).")
@click.option("--mount", "mounts", multiple=True, metavar="HOSTDIR[:GUESTDIR][:ro]",
              help="Share a host directory with the VM, mounted at every boot (virtiofs; repeatable). "
                   "GUESTDIR defaults to the same path as HOSTDIR, as in Lima and Multipass; ro makes it "
                   "read-only in the guest. Example: --mount $PWD/src --mount /srv/cfg:/cfg:ro")
@click.option("--keep-on-failure", is_flag=True, help="Leave a failed VM in place to inspect it.")
@click.option("--autostart", is_flag=True, help="Start it whenever the runtime starts (see 'vmctl autostart').")
@click.option("--json", "as_json", is_flag=True, help="Print the VM (a list for several) as JSON.")
@click.pass_context
def up(ctx: click.Context, /, names: tuple[str, ...], keep_on_failure: bool, autostart: bool, as_json: bool,
       **opts: Any) -> None:
    """Create VMs, boot them, and wait until they can be logged into.

    Several names are created in parallel. A VM that already exists with the
    same spec is returned as it is; with a different spec it is an error.

    \b
    Examples:
      vmctl up web
      vmctl up a b c --cpus 1 --memory 768
      vmctl up dev --ssh-key ~/.ssh/id_ed25519.pub --user-data extra.yaml --json
      vmctl up dockerhost --docker
      vmctl up web --publish 8080:80 --publish 5353:53/udp
      vmctl up dev --mount $PWD/src --mount /srv/cfg:/cfg:ro   # src at the same path
      vmctl up classic --profile stock   # the image's own boot loader and cloud-init
      vmctl up dockerhost --docker --autostart   # back whenever the runtime starts
    """
    specs = [_spec(name, opts) for name in names]  # every input checked before anything is made
    uri = ctx.obj["connect"]
    if len(specs) == 1:
        with output.progress(as_json) as progress:
            results: list[dict[str, Any] | VmctlError] = [_up_one(uri, specs[0], progress, keep_on_failure,
                                                                  autostart)]
    else:
        results = _up_many(uri, specs, as_json, keep_on_failure, autostart)
    _report_up(results, names, as_json)


def _up_many(uri: str | None, specs: list[MachineSpec], quiet: bool, keep: bool,
             autostart: bool) -> list[dict[str, Any] | VmctlError]:
    from .._core.progress import NoProgress

    lock, started = threading.Lock(), time.monotonic()

    def one(spec: MachineSpec) -> dict[str, Any] | VmctlError:
        progress = NoProgress() if quiet else output.LineProgress(spec.name, started, lock)
        try:
            return _up_one(uri, spec, progress, keep, autostart)
        except VmctlError as e:
            return e

    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        return list(pool.map(one, specs))


def _report_up(results: list[dict[str, Any] | VmctlError], names: tuple[str, ...], as_json: bool) -> None:
    failed = [(n, r) for n, r in zip(names, results, strict=True) if isinstance(r, VmctlError)]
    done = [r for r in results if not isinstance(r, VmctlError)]
    if as_json:
        output.emit_json(done[0] if len(names) == 1 and done else done)
    else:
        for data in done:
            click.echo(_summary(data))
    if failed:
        output.fail(*(error for _name, error in failed))


@click.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def ls(ctx: click.Context, as_json: bool) -> None:
    """List vmctl's VMs with their state and address.

    \b
    Example:
      vmctl ls --json
    """
    with _host(ctx) as host:
        rows = [_row(m) for m in host.list()]
    if as_json:
        output.emit_json(rows)
        return
    click.echo(f"{'NAME':<20} {'STATE':<10} {'IP':<16} {'USER':<10} {'IMAGE':<20} FORWARDER")
    for r in rows:
        state = r["state"] if r["complete"] else "incomplete"  # an interrupted up: 'vmctl up' resumes it
        click.echo(f"{r['name']:<20} {state:<10} {r['ip'] or '-':<16} {r['user']:<10} {r['image']:<20} "
                   f"{_forwarder_summary(r['forwarder'])}")


def _row(m: Machine) -> dict[str, Any]:
    return {"name": m.name, "state": m.state, "complete": not m.missing_phases,
            "missing_phases": list(m.missing_phases), "ip": m.ip, "user": m.user, "image": m.spec.image,
            "cpus": m.spec.cpus, "memory_mib": m.spec.memory_mib, "ports": list(m.spec.ports),
            "forwarder": m.forwarder() if m.needs_forwarder else None}


def _forwarder_summary(report: dict[str, Any] | None) -> str:
    """``docker ok, 2 ports`` / ``stopped`` / ``-`` (no Docker socket, no ports)."""
    if report is None:
        return "-"
    if report.get("state") != "running":
        return str(report.get("state"))
    parts = []
    if (docker := report.get("docker")) and docker.get("state") != "off":
        parts.append(f"docker {docker.get('state')}")
    ports = report.get("ports") or []
    failed = sum(1 for p in ports if p["state"] == "error")
    parts.append(f"{len(ports) - failed} ports" + (f" ({failed} failed)" if failed else ""))
    return ", ".join(parts)


@click.command()
@click.argument("name", shell_complete=_names)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def inspect(ctx: click.Context, name: str, as_json: bool) -> None:
    """Everything vmctl knows about a VM: state, address, keys, spec, timings.

    \b
    Example:
      vmctl inspect web --json
    """
    with _host(ctx) as host:
        data = host.get(name).to_dict()
    if as_json:
        output.emit_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key + ':':<22} {value}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name", shell_complete=_names)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--timeout", type=float, default=3600, show_default=True, help="Seconds CMD may run.")
@click.pass_context
def ssh(ctx: click.Context, name: str, command: tuple[str, ...], timeout: float) -> None:
    """Log into a VM, or run CMD in it and exit with CMD's exit code.

    The guest's host key is pinned: any other key is refused.

    \b
    Examples:
      vmctl ssh web
      vmctl ssh web -- uname -a
      vmctl ssh web -- 'df -h / && free -m'
    """
    with _host(ctx) as host:
        machine = host.get(name)
        if not command:
            from ..machines import sshconfig

            argv = sshconfig.ssh_argv(machine, [])
            os.execvp(argv[0], argv)
        result = machine.run(command[0] if len(command) == 1 else shlex.join(command), timeout=timeout)
        machine.close()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.rc)


def _split(arg: str) -> tuple[str | None, str]:
    name, sep, path = arg.partition(":")
    if sep and "/" not in name and name:
        return name, path
    return None, arg


@click.command()
@click.argument("src")
@click.argument("dst")
@click.pass_context
def cp(ctx: click.Context, src: str, dst: str) -> None:
    """Copy a file between the host and a VM (NAME:PATH on one side).

    \b
    Examples:
      vmctl cp app.tar web:/tmp/app.tar
      vmctl cp web:/var/log/syslog ./syslog
    """
    (src_vm, src_path), (dst_vm, dst_path) = _split(src), _split(dst)
    if (src_vm is None) == (dst_vm is None):
        raise ConfigError("exactly one of SRC and DST must be NAME:PATH", hint="vmctl cp file.txt web:/tmp/")
    with _host(ctx) as host:
        machine = host.get(src_vm or dst_vm or "")
        if dst_vm:
            local = Path(src_path)
            if not local.is_file():
                raise ConfigError(f"{local} is not a file")
            remote = dst_path + local.name if dst_path.endswith("/") else dst_path
            machine.put(local, remote)
        else:
            target = Path(dst_path)
            machine.get(src_path, target / Path(src_path).name if target.is_dir() else target)
        machine.close()


@click.command()
@click.argument("name", shell_complete=_names)
@click.option("--lines", "-n", type=int, default=None, help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the console writes.")
@click.pass_context
def console(ctx: click.Context, name: str, lines: int | None, follow: bool) -> None:
    """Print a VM's serial console log.

    \b
    Examples:
      vmctl console web -n 20
      vmctl console web -f
    """
    with _host(ctx) as host:
        machine = host.get(name)
        text = machine.console(lines)
        click.echo(text, nl=not text.endswith("\n"))
        path = Path(machine.record.serial_log)
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    with path.open(errors="replace") as f:
        f.seek(0, os.SEEK_END)
        while True:
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
            time.sleep(0.3)


def _vms_command(fn: Callable[..., None]) -> click.Command:
    """A command over VM names: ``vmctl VERB NAME...``, names completed from ``vmctl ls``."""
    named = click.argument("names", nargs=-1, required=True, shell_complete=_names)(click.pass_context(fn))
    return click.command()(named)


def _each(ctx: click.Context, names: tuple[str, ...], label: str, fn: Callable[[Machine], object]) -> None:
    with _host(ctx) as host:
        for name in names:
            with output.progress(as_json=False) as progress:
                progress.phase(f"{label} {name}")
                fn(host.get(name))


@click.command()
@click.argument("names", nargs=-1, required=True, shell_complete=_names)
@click.option("--force", is_flag=True, help="Power off at once instead of an ACPI shutdown.")
@click.option("--timeout", type=float, default=120, show_default=True, help="Seconds to wait for a clean shutdown.")
@click.pass_context
def stop(ctx: click.Context, names: tuple[str, ...], force: bool, timeout: float) -> None:
    """Shut VMs down (ACPI, then a hard stop after --timeout).

    \b
    Example:
      vmctl stop web db
    """
    _each(ctx, names, "stopping", lambda m: m.stop(timeout=timeout, force=force))


@_vms_command
def start(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Start stopped VMs and wait until SSH answers.

    A suspended VM ('vmctl suspend') is resumed as it was, as 'vmctl resume' does.

    \b
    Example:
      vmctl start web
    """
    _each(ctx, names, "starting", lambda m: m.start())


@_vms_command
def suspend(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Save running VMs' memory to disk and free the host's; 'resume' brings them back.

    libvirt's managed save: the VM's QEMU stops, its memory goes to a file beside
    libvirt's state, and 'vmctl resume' (or 'start') continues it where it was,
    containers and SSH sessions' processes included, with the guest's clock set
    to the host's. 'vmctl ls' shows it as suspended.

    \b
    Examples:
      vmctl suspend web
      vmctl resume web
    """
    _each(ctx, names, "suspending", lambda m: m.suspend())


@_vms_command
def resume(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Bring suspended VMs back as they were and wait until SSH answers.

    \b
    Example:
      vmctl resume web && vmctl ssh web -- uptime
    """
    _each(ctx, names, "resuming", lambda m: m.resume())


@click.command()
@click.argument("name", shell_complete=_names)
@click.argument("setting", type=click.Choice(["on", "off"]))
@click.pass_context
def autostart(ctx: click.Context, name: str, setting: str) -> None:
    """Start a VM whenever the runtime starts ('vmctl hypervisor start'), or not.

    On vmctl's private runtime, 'hypervisor start' starts (or resumes) the VMs
    marked autostart and their forwarders; on another libvirt host, libvirtd
    starts them when it starts. 'vmctl inspect NAME --json' shows the flag.

    \b
    Examples:
      vmctl autostart web on
      vmctl up db --autostart
      vmctl autostart web off
    """
    with _host(ctx) as host:
        host.get(name).set_autostart(setting == "on")
    click.echo(f"{name}: autostart {setting}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.pass_context
def events(ctx: click.Context, as_json: bool) -> None:
    """Print VMs' lifecycle events as they happen, until interrupted (Ctrl-C).

    Events: defined, started, stopped, shutting-down, suspended, resumed,
    paused, unpaused, crashed, removed; each with libvirt's detail
    (booted, shutdown, destroyed, saved, restored...).

    \b
    Examples:
      vmctl events
      vmctl events --json | jq -c 'select(.event == "crashed")'
    """
    import datetime
    import signal

    # Ctrl-C (or a TERM) ends the stream quietly, even when the shell that started this
    # ignored SIGINT (a background job's SIGINT is ignored, and Python then leaves it so)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with _host(ctx) as host, host.events() as stream:
        try:
            for event in stream:
                if as_json:
                    click.echo(json.dumps(dataclasses.asdict(event)))
                else:
                    when = datetime.datetime.fromtimestamp(event.time).strftime("%H:%M:%S.%f")[:-3]
                    click.echo(f"{when}  {event.name:<20} {event.event:<14} {event.detail}")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


@click.command("set")
@click.argument("name", shell_complete=_names)
@click.option("--cpus", type=int, default=None, help="vCPUs (from the next boot).")
@click.option("--memory", type=int, default=None, help="Memory in MiB (now if it is less, else from the next boot).")
@click.option("--disk", type=int, default=None, help="Disk size in GiB, only larger (now if it runs).")
@click.option("--json", "as_json", is_flag=True, help="Print what changed and when, as JSON.")
@click.pass_context
def set_(ctx: click.Context, name: str, cpus: int | None, memory: int | None, disk: int | None,
         as_json: bool) -> None:
    """Change a VM's vCPUs, memory or disk size, keeping everything else.

    The new sizes are recorded, so 'vmctl up' with them finds nothing different.
    vCPUs change at the VM's next boot; memory now when it shrinks (through the
    balloon), else at the next boot; the disk grows now on a running VM, its
    root partition and file system with it, or at the next start of a stopped
    one. A disk never shrinks: that is refused.

    \b
    Examples:
      vmctl set web --memory 2048 && vmctl restart web
      vmctl set web --disk 20
      vmctl set db --cpus 1 --memory 768 --json
    """
    from ..machines.resize import resize

    with _host(ctx) as host, output.progress(as_json) as progress:
        progress.phase(f"changing {name}")
        when = resize(host.get(name), cpus=cpus, memory_mib=memory, disk_gib=disk)
    if as_json:
        output.emit_json(when)
        return
    for key, at in when.items():
        click.echo(f"{name}: {key.replace('_gib', ' (GiB)').replace('_mib', ' (MiB)')} changed, {at}")


@click.command()
@click.argument("source", shell_complete=_names)
@click.argument("new")
@click.option("--json", "as_json", is_flag=True, help="Print the new VM as JSON.")
@click.pass_context
def clone(ctx: click.Context, source: str, new: str, as_json: bool) -> None:
    """Make a new VM from a stopped VM's disk, with its own identity.

    The clone has everything on the source's disk (packages, files, Docker's
    images and containers), not its snapshots, published ports or pool. It
    gets its own MAC, pinned host key, hostname, machine-id and Docker engine
    identity. The source stays as it was.

    \b
    Examples:
      vmctl stop web && vmctl clone web web2
      vmctl clone dockerhost dockerhost2 --json
    """
    from ..machines.clone import clone as make_clone

    with _host(ctx) as host, output.progress(as_json) as progress:
        machine = make_clone(host, source, new, progress)
        data = machine.to_dict()
        machine.close()
    if as_json:
        output.emit_json(data)
    else:
        click.echo(_summary(data))


@_vms_command
def restart(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Shut VMs down and start them again, waiting for SSH.

    \b
    Example:
      vmctl restart web
    """
    _each(ctx, names, "restarting", lambda m: m.restart())


@_vms_command
def down(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Destroy VMs: stop, undefine, delete disk, seed, log and keys.

    \b
    Example:
      vmctl down web db
    """
    from ..model.spec import check_name

    for name in names:  # every name checked before any VM is touched
        check_name(name, "VM name")
    with _host(ctx) as host, output.progress(False) as progress:
        if missing := [name for name in names if not host.exists(name)]:  # before any is removed
            raise ConfigError(f"no VM named {missing[0]!r} on {host.uri}; nothing was removed",
                              hint="'vmctl ls' lists the VMs")
        for name in names:
            if not host.delete(name, progress):
                raise ConfigError(f"no VM named {name!r} on {host.uri}", hint="'vmctl ls' lists the VMs")
            click.echo(f"removed {name}")


@click.command("netns-proxy", hidden=True)
@click.argument("netns")
@click.argument("host")
@click.argument("port", type=int)
def netns_proxy(netns: str, host: str, port: int) -> None:
    """Pipe stdin/stdout to HOST:PORT inside NETNS (an OpenSSH ProxyCommand)."""
    from .._core.proxy import pipe

    pipe(netns, host, port)
