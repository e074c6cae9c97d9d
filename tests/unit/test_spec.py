from __future__ import annotations

from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.machines.host import Host
from vmctl.model.spec import DomainSpec, NetworkSpec, check_name


@pytest.mark.parametrize("name", ["a", "web-1", "x" * 63, "0node"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", "a-", "A", "a_b", "a/b", "../x", "a b", "a<b", "a&b", "a;rm", "x" * 64, "a'b", "é",
     "web\n", "web\n../../x", "../../../../tmp/x"],
)
def test_bad_names_are_refused_with_the_name_in_the_message(name: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_name(name)
    assert repr(name) in str(e.value)


def test_network_addresses_derive_from_the_cidr() -> None:
    net = NetworkSpec(cidr="10.9.8.0/24")
    assert (net.gateway, net.prefix, net.dhcp_start, net.dhcp_end) == (
        "10.9.8.1", 24, "10.9.8.10", "10.9.8.254",
    )


@pytest.mark.parametrize("cidr", ["10.0.0.0/29", "nonsense", "10.0.0.1/24"])
def test_bad_networks(cidr: str) -> None:
    with pytest.raises(ConfigError, match="network"):
        NetworkSpec(cidr=cidr)


@pytest.mark.parametrize(("field", "value"), [("cpus", 0), ("cpus", 65), ("memory_mib", 64)])
def test_domain_ranges(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        DomainSpec(name="a", disk=Path("/d"), serial_log=Path("/s"), **{field: value})  # type: ignore[arg-type]


from vmctl.model.spec import MachineSpec, NetworkChoice  # noqa: E402


@pytest.mark.parametrize(
    ("text", "expected"),
    [("vmctl", NetworkChoice("network", "vmctl")), ("network:default", NetworkChoice("network", "default")),
     ("bridge:br0", NetworkChoice("bridge", "br0")), ("user", NetworkChoice("user", ""))],
)
def test_network_choices(text: str, expected: NetworkChoice) -> None:
    assert NetworkChoice.parse(text) == expected


@pytest.mark.parametrize("text", ["bridge:", "bridge:a b", "network:Bad", "x:y", "a;b"])
def test_bad_network_choices(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid network"):
        NetworkChoice.parse(text)


def test_machine_spec_differences_name_each_field() -> None:
    a = MachineSpec("web", cpus=2, memory_mib=1024)
    b = MachineSpec("web", cpus=1, memory_mib=768)
    assert a.differences(b) == ["cpus: 2 -> 1", "memory_mib: 1024 -> 768"]
    assert a.differences(MachineSpec.from_dict(a.to_dict())) == []


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"disk_gib": 0}, "disk size"), ({"boot": "pxe"}, "invalid boot mode"), ({"user": "root"}, "login user"),
     ({"image": "Bad"}, "image name"), ({"memory_mib": 100}, "memory")],
)
def test_machine_spec_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MachineSpec("web", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["../../../../tmp/x", "web\n", "a/b", ".hidden"])
def test_no_vm_path_is_made_from_a_bad_name(tmp_path: Path, name: str) -> None:
    """vmctl down ../../../../tmp/x once removed /tmp/x.qcow2: every VM path goes through Host.file."""
    host = Host.__new__(Host)  # no libvirt connection needed to build a path
    host.dir = tmp_path
    with pytest.raises(ConfigError, match="invalid VM name"):
        host.file(name, "qcow2")
    with pytest.raises(ConfigError, match="invalid VM name"):
        host.delete_unlocked(name)
