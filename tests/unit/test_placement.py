"""A pool over several hosts, the pure part: ``--hosts`` parsing, placement by weight with
the managers spread first, each host's /24, the routes between hosts, the overlap checks."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from vmctl.errors import ConfigError
from vmctl.model.placement import (
    PoolHost,
    check_pool_range,
    host_subnets,
    parse_addresses,
    parse_hosts,
    place,
    plan_routes,
)
from vmctl.swarm import network
from vmctl.swarm.pool import PoolSpec

B = "qemu+ssh://root@host-b/system"
C = "qemu+ssh://root@host-c:2222/system"
TEST_URI = "qemu+ssh://root@127.0.0.1:4022/system?keyfile=/k&known_hosts=/kh&no_tty=1"


@pytest.mark.parametrize(("text", "uri", "weight"), [
    ("local", "local", 1),
    ("local=3", "local", 3),
    (B, B, 1),
    (f"{B}=2", B, 2),
    (TEST_URI, TEST_URI, 1),  # its last query item is no_tty=1, not a weight
    (f"{TEST_URI}=4", TEST_URI, 4),
])
def test_a_host_is_a_uri_with_an_optional_weight(text: str, uri: str, weight: int) -> None:
    assert PoolHost.parse(text) == PoolHost(uri, weight)


@pytest.mark.parametrize(("text", "message"), [
    (f"{B}=0", "invalid weight 0 for host qemu+ssh://root@host-b/system: use 1-100"),
    (f"{B}=-1", "invalid weight -1"),
    (f"{B}=two", "the weight after '=' must be a whole number"),
    ("host-b", "invalid host 'host-b': not a libvirt URI"),
])
def test_a_bad_host_is_refused_with_what_was_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        PoolHost.parse(text)


def test_hosts_are_comma_separated_and_each_given_once() -> None:
    assert parse_hosts([f"local,{B}=2", C]) == (PoolHost("local"), PoolHost(B, 2), PoolHost(C))
    with pytest.raises(ConfigError, match="listed twice"):
        parse_hosts([f"local,{B}", f"{B}=3"])


def test_the_host_vmctl_connects_to_is_one_of_them_and_keeps_node_1() -> None:
    with pytest.raises(ConfigError, match="the hosts of a pool must include local"):
        parse_hosts([f"{B},{C}"])
    assert place(2, 1, [PoolHost("local"), PoolHost(B, 5)]) == {1: "local", 2: B}  # however light local is


def test_a_host_round_trips_through_its_record() -> None:
    with pytest.raises(ConfigError, match="every query parameter needs KEY=VALUE"):
        PoolHost(f"{B}?no_tty")
    for host in (PoolHost(TEST_URI, 3), PoolHost("local")):
        assert PoolHost.parse(str(host)) == host
    kept = PoolHost(TEST_URI)
    assert parse_hosts(["local", kept])[1] is kept  # not parsed again


def test_labels_are_short() -> None:
    assert [PoolHost(u).label for u in ("local", B, C, TEST_URI)] == ["local", "host-b", "host-c:2222",
                                                                       "127.0.0.1:4022"]


def test_equal_weights_alternate_and_the_first_host_breaks_ties() -> None:
    hosts = [PoolHost("local"), PoolHost(B)]
    assert place(3, 1, hosts) == {1: "local", 2: B, 3: "local"}


def test_weights_share_the_nodes_out() -> None:
    placed = place(9, 1, [PoolHost("local"), PoolHost(B, 2)])
    assert Counter(placed.values()) == {"local": 3, B: 6}


def test_managers_are_spread_first_so_one_host_down_keeps_the_quorum() -> None:
    hosts = [PoolHost("local", 5), PoolHost(B), PoolHost(C)]  # one host much heavier
    placed = place(7, 3, hosts)
    assert sorted(placed[i] for i in (1, 2, 3)) == sorted(["local", B, C])  # one manager each
    assert Counter(placed.values())["local"] == 5


def test_growing_keeps_the_nodes_where_they_are_and_the_spread() -> None:
    hosts = [PoolHost("local"), PoolHost(B)]
    before = place(2, 1, hosts)
    after = place(4, 1, hosts, existing=before)
    assert {i: after[i] for i in before} == before and Counter(after.values()) == {"local": 2, B: 2}
    # placement is prefix-stable: shrinking from the highest index gives what that size would
    assert {i: after[i] for i in (1, 2, 3)} == place(3, 1, hosts)


def test_each_host_gets_a_slash_24_of_the_range_in_order() -> None:
    hosts = [PoolHost("local"), PoolHost(B)]
    assert host_subnets("10.77.0.0/16", hosts) == {"local": "10.77.0.0/24", B: "10.77.1.0/24"}
    with pytest.raises(ConfigError, match="no room for a /24 per host"):
        check_pool_range("10.77.0.0/25", 1)
    with pytest.raises(ConfigError, match="no room for a /24 per host"):
        check_pool_range("10.77.0.0/24", 2)
    with pytest.raises(ConfigError, match="invalid pool range"):
        check_pool_range("10.77.0.0/33", 2)


IP_ADDR = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: lan0@if3    inet 172.31.250.1/30 scope global lan0\\       valid_lft forever preferred_lft forever
4: vmctlbr0    inet 192.168.150.1/24 brd 192.168.150.255 scope global vmctlbr0\\       valid_lft forever
"""


def test_addresses_leave_out_loopback_link_local_and_libvirts_bridges() -> None:
    link_local = "5: eth1    inet 169.254.3.3/16 brd 169.254.255.255 scope link eth1\\       valid_lft forever\n"
    assert parse_addresses(IP_ADDR + link_local, skip=["vmctlbr0"]) == ["172.31.250.1/30"]


def test_each_host_routes_the_others_subnet_through_their_shared_network() -> None:
    subnets = {"local": "10.77.0.0/24", B: "10.77.1.0/24"}
    routes = plan_routes(subnets, {"local": ["172.31.250.1/30", "10.0.0.5/24"], B: ["172.31.250.2/30"]})
    assert [(r.host, r.argv) for r in routes] == [
        ("local", ["ip", "route", "replace", "10.77.1.0/24", "via", "172.31.250.2"]),
        (B, ["ip", "route", "replace", "10.77.0.0/24", "via", "172.31.250.1"]),
    ]


def test_hosts_with_no_network_in_common_are_refused_with_the_route_to_add() -> None:
    with pytest.raises(ConfigError) as e:
        plan_routes({"local": "10.77.0.0/24", B: "10.77.1.0/24"}, {"local": ["10.0.0.5/24"], B: ["10.0.1.5/24"]})
    assert "share no network" in e.value.message and "ip route add 10.77.1.0/24 via" in e.value.hint


def _surveys(**networks: dict[str, str]) -> dict[str, network.Survey]:
    return {"local": network.Survey(networks.get("local", {"vmctl": "192.168.150.1/24"}), ("172.31.250.1/30",)),
            B: network.Survey(networks.get("b", {"vmctl": "192.168.150.1/24"}), ("172.31.250.2/30",))}


def test_the_plan_gives_subnets_and_routes_when_nothing_overlaps() -> None:
    plan = network.plan("wide", [PoolHost("local"), PoolHost(B)], "10.77.0.0/16", _surveys())
    assert plan.subnets == {"local": "10.77.0.0/24", B: "10.77.1.0/24"} and len(plan.routes) == 2
    # the pool's own network, as it should be, is no overlap: up runs again
    again = _surveys(b={"pool-wide": "10.77.1.1/24"})
    assert network.plan("wide", [PoolHost("local"), PoolHost(B)], "10.77.0.0/16", again) == plan


@pytest.mark.parametrize(("networks", "cidr", "message"), [
    ({}, "192.168.0.0/16", "pool range 192.168.0.0/16 overlaps network vmctl on local (192.168.150.1/24)"),
    ({"b": {"other": "10.77.3.1/24"}}, "10.77.0.0/16", "overlaps network other on host-b"),
    ({}, "172.31.0.0/16", "overlaps address 172.31.250.1/30 on local"),
    ({"b": {"pool-wide": "10.78.1.1/24"}}, "10.77.0.0/16", "pool wide's network on host-b has 10.78.1.1/24"),
])
def test_a_range_that_overlaps_anything_on_any_host_is_refused(
    networks: dict[str, dict[str, str]], cidr: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        network.plan("wide", [PoolHost("local"), PoolHost(B)], cidr, _surveys(**networks))


def test_a_pool_spec_over_hosts_places_its_nodes_on_its_network() -> None:
    spec = PoolSpec("wide", 3, hosts=("local", f"{B}=2"))  # type: ignore[arg-type]
    assert spec.cidr == "10.77.0.0/16" and spec.where == ["local", B]
    node = spec.node(2, B)
    assert (node.hypervisor, node.network, node.pool_hosts, node.pool_range) == (
        B, "pool-wide", ("local=1", f"{B}=2"), "10.77.0.0/16")
    assert PoolSpec.of(node, 3, 1) == spec
    assert PoolSpec("one", 2).node(1).network == "vmctl"  # a pool on one host: as before
    with pytest.raises(ConfigError, match="a network range is for a pool over several hosts"):
        PoolSpec("one", 2, cidr="10.77.0.0/16")
    assert len(network.bridge_name("x" * 56)) <= 15
