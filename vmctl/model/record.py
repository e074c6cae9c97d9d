"""What vmctl knows about a VM, kept in the libvirt domain's own metadata.

libvirt is the source of truth: no separate database can drift from it. The
record is JSON inside ``<vmctl:machine>`` in vmctl's XML namespace.

A record written by a newer vmctl may hold keys this one does not know (in
the record or in its spec): they are left out, and what is known is read. A
record that lacks what this vmctl needs is a :class:`ConfigError` naming the VM.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any
from xml.sax.saxutils import escape

from ..errors import ConfigError
from .spec import MachineSpec

METADATA_NS = "https://vmctl.dev/xmlns/machine/1"
KEY = "vmctl"
# the phases of ``up``, in order, as ``Record.phases`` lists those done
PHASES: tuple[str, ...] = ("define", "start", "ip", "ssh", "cloud_init", "docker")


@dataclass(frozen=True)
class Record:
    spec: MachineSpec
    user: str
    host_key: str  # the pinned public host key, "ssh-ed25519 AAAA..."
    mac: str
    instance_id: str
    disk: str
    seed: str
    serial_log: str
    accel: str
    netns: str | None = None
    created: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    # the phases of ``up`` done (see PHASES); None: made by a vmctl that did not record
    # them. Such a VM counts as complete (a failed old ``up`` removed its VM; only one
    # killed outright, with no cleanup, is wrongly taken for complete)
    phases: tuple[str, ...] | None = ()
    # the disk was grown while the VM was off (``vmctl set --disk``): the next start
    # grows its root partition and file system, then clears this
    grow_root: bool = False

    def to_json(self) -> str:
        raw: dict[str, Any] = asdict(self)
        raw["spec"] = self.spec.to_dict()
        raw["phases"] = None if self.phases is None else list(self.phases)
        return json.dumps(raw, sort_keys=True)

    def element(self) -> str:
        """The metadata element, as libvirt's setMetadata wants it."""
        return f'<machine xmlns="{METADATA_NS}">{escape(self.to_json())}</machine>'

    @classmethod
    def from_json(cls, text: str, machine: str = "") -> Record:
        """The record in ``text``; keys it does not know are ignored. ``machine`` names the
        VM in errors (else the spec's name does)."""
        raw = _mapping(text, machine)
        spec = raw.get("spec")
        name = machine or (str(spec.get("name")) if isinstance(spec, dict) and spec.get("name") else "?")
        known = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        missing = [f.name for f in fields(cls) if _required(f.name) and f.name not in known]
        if missing:
            raise _unreadable(name, f"it lacks {', '.join(missing)}")
        known["spec"] = _spec(spec, name)
        known["phases"] = _phases(raw.get("phases"), name)
        return cls(**known)

    @classmethod
    def from_element(cls, xml: str, machine: str = "") -> Record:
        try:
            text = ET.fromstring(xml).text or ""
        except ET.ParseError as e:
            raise _unreadable(machine or "?", f"it is not XML: {e}") from e
        return cls.from_json(text, machine)


def _required(name: str) -> bool:
    f = Record.__dataclass_fields__[name]
    return f.default is MISSING and f.default_factory is MISSING


def _mapping(text: str, machine: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise _unreadable(machine or "?", f"it is not JSON: {e}") from e
    if not isinstance(raw, dict):
        raise _unreadable(machine or "?", "it is not a JSON object")
    return raw


def _spec(raw: object, name: str) -> MachineSpec:
    if not isinstance(raw, dict):
        raise _unreadable(name, "its spec is not a JSON object")
    try:
        return MachineSpec.from_dict(raw)
    except TypeError as e:  # a field the spec needs is missing, or a value of the wrong type
        raise _unreadable(name, f"its spec does not fit this vmctl: {e}") from e
    except ConfigError as e:  # a value this vmctl refuses (a profile only a newer one has)
        raise _unreadable(name, f"its spec does not fit this vmctl: {e.message}") from e


def _phases(raw: object, name: str) -> tuple[str, ...] | None:
    """Missing or null: a record from before phases were recorded (None)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise _unreadable(name, "its phases are not a list of names")
    return tuple(raw)


def _unreadable(name: str, why: str) -> ConfigError:
    return ConfigError(
        f"VM {name!r}: vmctl cannot read its metadata: {why}",
        hint=f"was it made by a newer vmctl? use that one for it; 'virsh dumpxml {name}' shows the metadata",
    )
