from __future__ import annotations

from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.spec import DomainSpec, NetworkSpec, check_name


@pytest.mark.parametrize("name", ["a", "web-1", "x" * 63, "0node"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "-a", "a-", "A", "a_b", "a/b", "../x", "a b", "a<b", "a&b", "a;rm", "x" * 64, "a'b", "é"],
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
