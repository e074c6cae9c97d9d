"""Changing a VM's vCPUs, memory and disk after it was made (``vmctl set``).

The new sizes go into the VM's spec, in its libvirt metadata, so ``vmctl up``
with the new spec finds nothing different. What can change now does (memory
down through the balloon, the disk of a running VM with its partition and
file system); the rest takes effect at the VM's next boot, and the result
says which.
"""

from __future__ import annotations

from dataclasses import replace

from .._core.locks import file_lock
from ..errors import ConfigError
from ..model.spec import MachineSpec
from .lifecycle import check_against_host
from .machine import Machine

LIVE, NEXT_BOOT = "now", "at the next boot"

def resize(machine: Machine, cpus: int | None = None, memory_mib: int | None = None,
           disk_gib: int | None = None) -> dict[str, str]:
    """Give ``machine`` new sizes; returns, for each that changed, when it takes effect
    (``now`` or ``at the next boot``). A smaller disk is refused; nothing changes unless
    every new size is valid (and the VM running or stopped)."""
    with file_lock(machine.host.file(machine.name, "lock")):  # one change of the record at a time
        spec = machine.spec
        new = _checked(machine, replace(spec, cpus=cpus or spec.cpus, memory_mib=memory_mib or spec.memory_mib,
                                        disk_gib=disk_gib or spec.disk_gib))
        running = machine.running_or_stopped("changed") == "running"
        check_against_host(machine.host, new)
        hv, name, when = machine.host.hv, machine.name, {}
        if new.cpus != spec.cpus:
            hv.set_vcpus(name, new.cpus)
            when["cpus"] = NEXT_BOOT  # (no vCPU hotplug: the domain has no spare vCPU slots)
        if new.memory_mib != spec.memory_mib:
            live = running and new.memory_mib <= hv.max_memory_mib(name)
            hv.set_memory(name, new.memory_mib, live)
            when["memory_mib"] = LIVE if live else NEXT_BOOT
        if new.disk_gib != spec.disk_gib:
            if running:
                hv.resize_disk_live(name, "vda", new.disk_gib * 2**30)
            else:
                machine.host.hv.resize_volume(machine.record.disk, new.disk_gib << 30)
            when["disk_gib"] = LIVE if running else NEXT_BOOT
        grow_later = when.get("disk_gib") == NEXT_BOOT  # the next start grows the partition and file system
        machine.save(replace(machine.record, spec=new, grow_root=machine.record.grow_root or grow_later))
    if running and "disk_gib" in when:
        machine.grow_root()
    return when


def _checked(machine: Machine, new: MachineSpec) -> MachineSpec:
    spec = machine.spec
    if new.disk_gib < spec.disk_gib:
        raise ConfigError(f"{machine.name}'s disk is {spec.disk_gib} GiB: shrinking it to {new.disk_gib} GiB is "
                          "refused (its file system would lose data)", hint="a disk can only grow")
    if new == spec:
        raise ConfigError(f"{machine.name} has {spec.cpus} vCPUs, {spec.memory_mib} MiB and {spec.disk_gib} GiB "
                          "already: nothing to change", hint="give --cpus, --memory or --disk with a new value")
    return new
