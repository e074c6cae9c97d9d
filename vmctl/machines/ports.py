"""Publishing and unpublishing a VM's ports after it was made (``vmctl port add|rm``).

The ports live in the VM's spec, in its libvirt metadata, so they survive a
restart of the VM, the forwarder and the host; the forwarder is told to pick
them up and must report the new ones listening, else the record is put back.
"""

from __future__ import annotations

from dataclasses import replace

from .._core.locks import file_lock
from ..errors import ConfigError
from ..model.ports import PortSpec, overlapping, parse_all
from ..model.record import Record
from . import forwarder
from .lifecycle import check_ports
from .machine import Machine


def published(machine: Machine) -> list[dict[str, str]]:
    """Every forward of the VM: its spec's (static) and its containers' (docker), with state."""
    report = machine.forwarder()
    listed = {p["port"]: p for p in report.get("ports") or []}
    static = [str(p) for p in parse_all(machine.spec.ports)]
    rows = [listed.get(port, {"port": port, "source": "static", "state": "stopped", "error": ""}) for port in static]
    return rows + [p for p in listed.values() if p["source"] != "static"]


def add(machine: Machine, texts: list[str]) -> list[PortSpec]:
    """Publish ``texts`` on a VM; nothing changes unless every one of them can listen."""
    with file_lock(machine.host.file(machine.name, "lock")):  # one change of the record at a time
        new, current = parse_all(texts), parse_all(machine.spec.ports)
        if clash := overlapping(new, current):
            raise ConfigError(f"{machine.name} already publishes {clash[0][1]}",
                              hint=f"'vmctl port ls {machine.name}'")
        check_ports(machine.host, replace(machine.spec, ports=tuple(texts)))
        before = machine.record
        machine.save(replace(before, spec=replace(machine.spec, ports=(*machine.spec.ports, *map(str, new)))))
        try:
            failed = _failed(machine, new) if machine.state == "running" else []
        except BaseException:
            _undo(machine, before)
            raise
        if failed:
            _undo(machine, before)
            raise ConfigError(f"port {failed[0]['port']}: {failed[0]['error']}", hint="pick another host port")
    return list(new)


def _undo(machine: Machine, before: Record) -> None:
    machine.save(before)
    if machine.state == "running":
        machine.forward()


def remove(machine: Machine, texts: list[str]) -> list[PortSpec]:
    """Stop publishing ports given as full specs or as ``HOSTPORT[/udp]``."""
    with file_lock(machine.host.file(machine.name, "lock")):
        current = parse_all(machine.spec.ports)
        gone = [_find(machine, current, text) for text in texts]
        kept = tuple(str(p) for p in current if p not in gone)
        machine.save(replace(machine.record, spec=replace(machine.spec, ports=kept)))
        if not machine.needs_forwarder:
            forwarder.stop(machine.host.dir, machine.name)  # nothing left to forward
        elif machine.state == "running":
            machine.forward()
    return gone


def _find(machine: Machine, current: tuple[PortSpec, ...], text: str) -> PortSpec:
    port, _, proto = text.strip().partition("/")
    if port.isdigit():
        found = [p for p in current if p.host_port == int(port) and p.proto == (proto or "tcp")]
    else:
        wanted = PortSpec.parse(text)
        found = [p for p in current if p == wanted]
    if not found:
        raise ConfigError(f"{machine.name} does not publish {text!r}", hint=f"'vmctl port ls {machine.name}'")
    return found[0]


def _failed(machine: Machine, new: tuple[PortSpec, ...]) -> list[dict[str, str]]:
    report = machine.forward()
    wanted = {str(p) for p in new}
    rows = [p for p in report.get("ports") or [] if p["port"] in wanted]
    missing = wanted - {p["port"] for p in rows}
    return [p for p in rows if p["state"] == "error"] + [
        {"port": m, "error": "the forwarder did not report it"} for m in sorted(missing)]
