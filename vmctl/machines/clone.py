"""``vmctl clone SRC NEW``: a new VM from a stopped VM's disk, with an identity of its own.

The clone's disk is a new overlay on the same base image holding everything the
source changed (``qemu-img convert -B``): installed packages, files, Docker's
images and containers; not its snapshots. It gets a new MAC, seed, host key
(pinned), instance ID and hostname as any new VM does, and, once it is up, a
new machine-id and Docker engine identity (``templates/clone/reidentify.sh.j2``).
Published ports are not copied (the source's host ports are its own); nor is
pool membership.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .._core.locks import file_lock
from .._core.progress import NoProgress, Progress
from .._core.render import render
from ..errors import ConfigError, GuestError, MachineStateError
from ..model.spec import check_name
from ..model.uri import require_local
from .host import Host
from .machine import Machine


def clone(host: Host, source: str, new: str, progress: Progress = NoProgress()) -> Machine:
    """Make VM ``new`` from stopped VM ``source``; returns it, up and reachable."""
    check_name(new, "VM name")
    require_local(host.uri, "clone")  # it copies the source's disk with qemu-img, here
    src = host.get(source)
    if host.exists(new):
        raise ConfigError(f"a VM named {new!r} exists already", hint="choose another name for the clone")
    with file_lock(host.file(source, "lock"), what=f"VM {source}", progress=progress):
        if (state := src.state) != "shutoff":
            raise MachineStateError(f"{source} is {state}: only a stopped VM can be cloned", name=source,
                                    state=state, hint=f"'vmctl stop {source}' first")
        spec = replace(src.spec, name=new, ports=(), pool="")
        machine = host.up(spec, progress, disk_from=Path(src.record.disk))
    progress.phase("giving the clone its own machine-id and Docker identity")
    try:
        result = machine.run(["sudo", "sh", "-c", render("clone/reidentify.sh.j2", user=machine.user)], timeout=300)
        if not result.ok:
            raise GuestError(f"giving clone {new} its own identity failed (the clone was removed): {result.tail()}",
                             machine=new, hint=f"'vmctl start {source}' and look for what differs, then clone again")
    except BaseException:  # half a new identity is no clone: nothing is left behind, even after Ctrl-C
        machine.close()
        host.delete(new)
        raise
    return machine
