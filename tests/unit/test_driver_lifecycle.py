"""Suspend state, autostart, snapshots and lifecycle events, against libvirt's in-memory test driver
(test:///default: every connection of this process sees the same domains)."""

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import libvirt
import pytest

from vmctl.errors import HypervisorError, NoSuchSnapshot
from vmctl.hypervisor.driver import EventStream, Hypervisor, event_name
from vmctl.hypervisor.xml import snapshot_xml

URI = "test:///default"


@pytest.fixture()
def hv() -> Iterator[Hypervisor]:
    with Hypervisor(URI) as hv:
        if hv.state("test") != "running":
            hv.start("test")
        yield hv


def test_event_words_say_what_vmctl_says() -> None:
    e = libvirt
    assert event_name(e.VIR_DOMAIN_EVENT_STOPPED, e.VIR_DOMAIN_EVENT_STOPPED_SAVED) == "suspended"
    assert event_name(e.VIR_DOMAIN_EVENT_STARTED, e.VIR_DOMAIN_EVENT_STARTED_RESTORED) == "resumed"
    assert event_name(e.VIR_DOMAIN_EVENT_STARTED, e.VIR_DOMAIN_EVENT_STARTED_BOOTED) == "started"
    assert event_name(e.VIR_DOMAIN_EVENT_STOPPED, e.VIR_DOMAIN_EVENT_STOPPED_CRASHED) == "crashed"
    assert event_name(e.VIR_DOMAIN_EVENT_STOPPED, e.VIR_DOMAIN_EVENT_STOPPED_DESTROYED) == "stopped"
    assert event_name(e.VIR_DOMAIN_EVENT_UNDEFINED, 0) == "removed"
    assert event_name(99, 0) == "event-99"  # one libvirt adds later is still shown


def test_a_managed_save_is_suspended_and_a_start_resumes_it(hv: Hypervisor) -> None:
    hv.managed_save("test")
    assert hv.state("test") == "suspended"
    hv.start("test")
    assert hv.state("test") == "running"


def test_autostart_is_libvirts_flag(hv: Hypervisor) -> None:
    hv.set_autostart("test", True)
    assert hv.autostart("test")
    hv.set_autostart("test", False)
    assert not hv.autostart("test")


def test_lifecycle_events_arrive_in_order_with_libvirts_detail(hv: Hypervisor) -> None:
    with EventStream(URI) as stream:
        hv.managed_save("test")
        hv.start("test")
        got = []
        while (event := stream.get(timeout=5)) is not None:
            got.append((event.name, event.event, event.detail))
            if event.event in ("started", "resumed"):
                break
    # (the test driver reports the restore as a boot; QEMU's says "restored": the e2e suite sees it)
    assert got == [("test", "suspended", "saved"), ("test", "started", "booted")], got
    assert list(stream) == []  # a closed stream ends at once


def test_a_host_that_cannot_be_reached_is_one_clear_error() -> None:
    with pytest.raises(HypervisorError, match="cannot connect to libvirt at qemu:///nowhere"):
        EventStream("qemu:///nowhere")


def test_snapshot_xml_keeps_the_writable_disk_and_memory_only_when_asked() -> None:
    text = snapshot_xml("before", memory=True, disks=[("vda", "internal"), ("vdb", "no")], description="a <note>")
    root = ET.fromstring(text)
    assert root.findtext("name") == "before" and root.findtext("description") == "a <note>"
    assert root.find("memory").get("snapshot") == "internal"  # type: ignore[union-attr]
    assert [(d.get("name"), d.get("snapshot")) for d in root.findall("disks/disk")] == [("vda", "internal"),
                                                                                       ("vdb", "no")]
    off = ET.fromstring(snapshot_xml("off", memory=False, disks=[("vda", "internal")]))
    assert off.find("memory").get("snapshot") == "no" and off.find("description") is None  # type: ignore[union-attr]


def test_snapshots_are_listed_reverted_and_deleted_and_an_unknown_one_is_named(hv: Hypervisor) -> None:
    assert hv.disk_targets("test") == [("vda", False)]  # the test driver's one disk, writable
    hv.snapshot_create("test", snapshot_xml("one", memory=False, disks=[]))
    hv.snapshot_create("test", snapshot_xml("two", memory=False, disks=[], description="second"))
    snaps = hv.snapshots("test")
    assert [s["name"] for s in snaps] == ["one", "two"] and snaps[1]["description"] == "second"
    assert snaps[1]["current"] and not snaps[0]["current"] and snaps[0]["state"] == "running"
    hv.snapshot_revert("test", "one")
    assert [s["name"] for s in hv.snapshots("test") if s["current"]] == ["one"]
    with pytest.raises(NoSuchSnapshot, match="test has no snapshot named 'nope'"):
        hv.snapshot_revert("test", "nope")
    for name in ("one", "two"):
        hv.snapshot_delete("test", name)
    assert hv.snapshots("test") == []


def test_vcpus_and_memory_are_set_for_the_next_boot_up_or_down(hv: Hypervisor) -> None:
    dom = hv.conn.lookupByName("test")
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    for cpus, mib in ((2, 512), (1, 256)):  # up, then down: maximum and count in the right order
        hv.set_vcpus("test", cpus)
        hv.set_memory("test", mib, live=False)
        root = ET.fromstring(dom.XMLDesc(inactive))
        assert (root.findtext("vcpu"), root.findtext("memory"), root.findtext("currentMemory")) == (
            str(cpus), str(mib * 1024), str(mib * 1024))
