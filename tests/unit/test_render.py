"""Rendered XML: golden files, libvirt's own schema, and a define on the test driver."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from vmctl.errors import ConfigError
from vmctl.hypervisor.xml import domain_xml, network_xml, storage_pool_xml, volume_xml
from vmctl.model.mounts import Mount, Shares
from vmctl.model.record import METADATA_NS
from vmctl.model.spec import DiskBoot, DomainSpec, KernelBoot, NetworkChoice, NetworkSpec, VolumeSpec

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("VMCTL_UPDATE_GOLDEN") == "1"
M = Path("/var/lib/vmctl/machines")
KERNEL = KernelBoot(Path("/var/cache/vmctl/images/debian-12.vmlinuz"), Path("/var/cache/vmctl/images/debian-12.initrd"),
                    "root=LABEL=vmctl-root ro console=ttyS0,115200n8")


VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")
MOUNTS = (Mount("/srv/app", "/srv/app"), Mount("/srv/a&b <cfg>", "/cfg", readonly=True))


def _domain(**kw: object) -> DomainSpec:
    base: dict[str, object] = {"name": "web", "disk": M / "web.qcow2", "serial_log": M / "web.serial.log",
                                   "base": Path("/var/cache/vmctl/images/debian-12.qcow2"),
                                   "seed": M / "web.seed.iso", "mac": "52:54:00:12:34:56",
                                   "metadata": '{"spec": {"name": "web"}, "note": "<&>"}'}
    base.update(kw)
    return DomainSpec(**base)  # type: ignore[arg-type]


DOMAINS = {
    "domain-disk-tcg-network": _domain(),
    "domain-kernel-kvm-network": _domain(accel="kvm", boot=KERNEL, cpus=4, memory_mib=4096),
    "domain-disk-tcg-bridge": _domain(network=NetworkChoice("bridge", "br0")),
    "domain-disk-tcg-user": _domain(network=NetworkChoice("user", "")),
    "domain-kernel-tcg-nat": _domain(boot=KERNEL, network=NetworkChoice("network", "default")),
    "domain-bare-no-network": _domain(network=None, seed=None, mac=None, metadata="", base=None),
    "domain-kernel-tcg-virtiofs": _domain(boot=KERNEL, shares=Shares(MOUNTS, "virtiofs", VIRTIOFSD)),
    "domain-disk-tcg-9p": _domain(shares=Shares(MOUNTS, "9p")),
}
NETWORKS = {
    "network-isolated": NetworkSpec(),
    "network-nat": NetworkSpec(name="vmctl-nat", bridge="vmctlnat0", cidr="10.77.0.0/24", mode="nat"),
    # a pool's network on one of its hosts: routed by the host, no firewall rules from libvirt
    "network-open": NetworkSpec(name="pool-wide", bridge="vp0123456789", cidr="10.77.1.0/24", mode="open"),
}

VOLUMES = {
    # a VM's overlay: private (0600), backed by the base image's volume
    "volume-overlay": VolumeSpec("web.qcow2", 10 << 30, backing="/var/lib/vmctl/images/debian-12.0123456789ab.qcow2"),
    # an empty file that an upload fills: a base image, readable by every VM's QEMU
    "volume-upload": VolumeSpec("debian-12.0123456789ab.qcow2", 505413632, "raw", 0o644),
}


def _golden(name: str, text: str, update: bool = UPDATE) -> None:
    """``text`` must equal the golden file; only VMCTL_UPDATE_GOLDEN=1 writes one (a missing
    golden file fails: it is never made silently, so a test cannot pass against itself)."""
    path = GOLDEN / f"{name}.xml"
    if update:
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; if this output is new and right, make it deliberately "
                    "with VMCTL_UPDATE_GOLDEN=1 make unit, review it, and commit it")
    assert text == path.read_text(), f"{name} differs from {path}; VMCTL_UPDATE_GOLDEN=1 regenerates"


def _validate(text: str, kind: str, tmp_path: Path) -> None:
    assert shutil.which("virt-xml-validate"), "virt-xml-validate (libvirt-clients) is required"
    path = tmp_path / f"{kind}.xml"
    path.write_text(text)
    done = subprocess.run(["virt-xml-validate", str(path), kind], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_domain_matches_golden_and_libvirt_schema(name: str, tmp_path: Path) -> None:
    text = domain_xml(DOMAINS[name])
    _golden(name, text)
    _validate(text, "domain", tmp_path)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_network_matches_golden_and_libvirt_schema(name: str, tmp_path: Path) -> None:
    text = network_xml(NETWORKS[name])
    _golden(name, text)
    _validate(text, "network", tmp_path)


def test_every_golden_file_has_its_case_and_a_missing_one_fails(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    assert {p.stem for p in GOLDEN.glob("*.xml")} == set(DOMAINS) | set(NETWORKS) | set(VOLUMES)
    monkeypatch.setattr(sys.modules[__name__], "GOLDEN", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="golden file .* is missing; .*VMCTL_UPDATE_GOLDEN=1"):
        _golden("domain-new", "<domain/>", update=False)
    assert not (tmp_path / "domain-new.xml").exists()  # not made
    _golden("domain-new", "<domain/>", update=True)  # made only when asked
    assert (tmp_path / "domain-new.xml").read_text() == "<domain/>"


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_volume_matches_golden_and_libvirt_schema_and_is_made_by_the_test_driver(name: str, tmp_path: Path) -> None:
    text = volume_xml(VOLUMES[name])
    _golden(name, text)
    _validate(text, "storagevol", tmp_path)
    conn = libvirt.open("test:///default")
    try:
        vol = conn.storagePoolLookupByName("default-pool").createXML(text, 0)
        assert vol.name() == VOLUMES[name].name and vol.info()[1] == VOLUMES[name].capacity
        vol.delete(0)
    finally:
        conn.close()


@pytest.mark.parametrize("bad", ["", "a/b", "../x", ".hidden"])
def test_a_volume_name_is_a_plain_file_name(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid volume name"):
        VolumeSpec(bad, 1)


def test_pool_is_valid(tmp_path: Path) -> None:
    _validate(storage_pool_xml("vmctl", "/var/lib/vmctl/machines"), "storagepool", tmp_path)


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_every_domain_defines_on_libvirts_test_driver(name: str) -> None:
    conn = libvirt.open("test:///default")
    try:
        dom = conn.defineXML(domain_xml(DOMAINS[name]))
        assert dom.name() == "web"
        dom.undefine()
    finally:
        conn.close()


def test_networks_define_on_the_test_driver_but_nat_is_never_started_here() -> None:
    conn = libvirt.open("test:///default")
    try:
        for spec in NETWORKS.values():
            net = conn.networkDefineXML(network_xml(spec))
            assert net.name() == spec.name and not net.isActive()
            net.undefine()
    finally:
        conn.close()


def test_hostile_paths_and_metadata_are_escaped() -> None:
    spec = _domain(disk=Path("/tmp/a&b<c>'\".qcow2"), metadata='</vmctl:machine><evil/>')
    root = ET.fromstring(domain_xml(spec))
    assert root.find("devices/disk/source").get("file") == "/tmp/a&b<c>'\".qcow2"  # type: ignore[union-attr]
    meta = root.find(f"metadata/{{{METADATA_NS}}}machine")
    assert meta is not None and meta.text == "</vmctl:machine><evil/>" and not list(meta)


@pytest.mark.parametrize(("spec", "domain_type"), [(_domain(accel="kvm"), "kvm"), (_domain(accel="tcg"), "qemu")])
def test_accelerator_chooses_the_domain_type(spec: DomainSpec, domain_type: str) -> None:
    assert ET.fromstring(domain_xml(spec)).get("type") == domain_type


def test_tcg_caps_its_code_cache_and_freed_guest_memory_goes_back_to_the_host() -> None:
    tcg = ET.fromstring(domain_xml(_domain(accel="tcg", tcg_cache_mib=128)))
    cache = tcg.find("features/tcg/tb-cache")
    assert cache is not None and (cache.text, cache.get("unit")) == ("128", "MiB")
    assert ET.fromstring(domain_xml(_domain(accel="kvm"))).find("features/tcg") is None  # KVM has no such cache
    for accel in ("kvm", "tcg"):
        balloon = ET.fromstring(domain_xml(_domain(accel=accel))).find("devices/memballoon")
        assert balloon is not None and balloon.get("freePageReporting") == "on"


def test_shares_are_filesystems_and_virtiofs_shares_the_memory() -> None:
    plain = ET.fromstring(domain_xml(_domain()))
    virtiofs = ET.fromstring(domain_xml(_domain(shares=Shares(MOUNTS, "virtiofs", VIRTIOFSD))))
    ninep = ET.fromstring(domain_xml(_domain(shares=Shares(MOUNTS, "9p"))))
    assert plain.find("devices/filesystem") is None and plain.find("memoryBacking") is None
    assert virtiofs.find("memoryBacking/source").get("type") == "memfd"  # type: ignore[union-attr]
    assert virtiofs.find("memoryBacking/access").get("mode") == "shared"  # type: ignore[union-attr]
    assert ninep.find("memoryBacking") is None
    for root, driver in ((virtiofs, "virtiofs"), (ninep, "path")):
        shares = root.findall("devices/filesystem")
        assert [s.find("source").get("dir") for s in shares] == ["/srv/app", "/srv/a&b <cfg>"]  # type: ignore[union-attr]
        assert [s.find("target").get("dir") for s in shares] == ["vmctl0", "vmctl1"]  # type: ignore[union-attr]
        assert {s.find("driver").get("type") for s in shares} == {driver}  # type: ignore[union-attr]
    # libvirt 9.0 refuses <readonly/> on virtiofs; there the guest mounts it ro
    assert [s.find("readonly") is not None for s in ninep.findall("devices/filesystem")] == [False, True]
    assert all(s.find("readonly") is None for s in virtiofs.findall("devices/filesystem"))
    assert virtiofs.find("devices/filesystem/binary").get("path") == str(VIRTIOFSD)  # type: ignore[union-attr]


def test_disk_boot_uses_the_boot_loader_and_kernel_boot_the_kernel() -> None:
    disk = ET.fromstring(domain_xml(_domain(boot=DiskBoot())))
    kernel = ET.fromstring(domain_xml(_domain(boot=KERNEL)))
    assert disk.find("os/boot") is not None and disk.find("os/kernel") is None
    assert kernel.findtext("os/kernel") == str(KERNEL.kernel) and kernel.findtext("os/cmdline") == KERNEL.cmdline


def test_the_shared_base_image_is_never_handed_to_a_guest() -> None:
    """libvirt's dynamic ownership would chown the whole backing chain to libvirt-qemu and
    never give it back: every VM's QEMU could then rewrite the base all VMs boot from."""
    root = ET.fromstring(domain_xml(_domain()))
    store = root.find("devices/disk/backingStore")
    assert store is not None and store.find("source").get("file") == "/var/cache/vmctl/images/debian-12.qcow2"
    label = store.find("source/seclabel")
    assert label is not None and label.get("model") == "dac" and label.get("relabel") == "no"


def test_a_vms_address_is_its_newest_lease() -> None:
    from vmctl.hypervisor.driver import newest_lease

    old = {"ipaddr": "192.168.150.67", "expirytime": 1_000, "clientid": "ff:00:aa"}
    new = {"ipaddr": "192.168.150.90", "expirytime": 4_600, "clientid": "ff:00:bb"}  # new machine-id, new client ID
    assert newest_lease([old, new]) == new and newest_lease([new, old]) == new
    assert newest_lease([]) is None
