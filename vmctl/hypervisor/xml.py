"""libvirt XML from specs: pure rendering, no I/O beyond reading templates."""

from __future__ import annotations

from .._core.render import render
from ..model.record import METADATA_NS
from ..model.spec import DomainSpec, NetworkSpec, VolumeSpec


def domain_xml(spec: DomainSpec) -> str:
    return render("domain.xml.j2", d=spec, metadata_ns=METADATA_NS)


def network_xml(spec: NetworkSpec) -> str:
    return render("network.xml.j2", net=spec)


def storage_pool_xml(name: str, path: str) -> str:
    return render("storage-pool.xml.j2", name=name, path=path)


def volume_xml(spec: VolumeSpec) -> str:
    return render("volume.xml.j2", v=spec)


def snapshot_xml(name: str, *, memory: bool, disks: list[tuple[str, str]], description: str = "") -> str:
    """An internal snapshot: ``disks`` is each disk's target and ``internal`` or ``no``; with
    ``memory``, the running VM's memory and device state too."""
    return render("snapshot.xml.j2", name=name, memory=memory, disks=disks, description=description)
