"""What vmctl knows about a VM, kept in the libvirt domain's own metadata.

libvirt is the source of truth: no separate database can drift from it. The
record is JSON inside ``<vmctl:machine>`` in vmctl's XML namespace.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from .spec import MachineSpec

METADATA_NS = "https://vmctl.dev/xmlns/machine/1"
KEY = "vmctl"


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

    def to_json(self) -> str:
        raw: dict[str, Any] = asdict(self)
        raw["spec"] = self.spec.to_dict()
        return json.dumps(raw, sort_keys=True)

    def element(self) -> str:
        """The metadata element, as libvirt's setMetadata wants it."""
        return f'<machine xmlns="{METADATA_NS}">{escape(self.to_json())}</machine>'

    @classmethod
    def from_json(cls, text: str) -> Record:
        raw = json.loads(text)
        raw["spec"] = MachineSpec.from_dict(raw["spec"])
        return cls(**raw)

    @classmethod
    def from_element(cls, xml: str) -> Record:
        return cls.from_json(ET.fromstring(xml).text or "")
