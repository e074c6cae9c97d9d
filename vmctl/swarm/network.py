"""A pool's network over several hypervisor hosts: the routed shape.

On each host the pool has a libvirt network of its own (``pool-NAME``, forward mode
``open``: the host routes it, and libvirt adds no firewall rules), with that host's /24
of the pool's range. Each host gets a route to every other host's /24 through the
address that host has on a network both share (their LAN), so the nodes reach each
other on Swarm's ports (2377/tcp, 7946/tcp+udp, 4789/udp) with no NAT in between.

Everything is checked before anything is made (:func:`survey`, :func:`plan`): a
range that overlaps a network or an address on any host, or two hosts with no
network in common, is a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, VmctlError
from ..hypervisor.xml import network_xml
from ..machines.host import Host
from ..model.placement import PoolHost, Route, host_subnets, label, overlaps, parse_addresses, plan_routes
from ..model.spec import NetworkSpec


def network_name(pool: str) -> str:
    return f"pool-{pool}"


def bridge_name(pool: str) -> str:
    """``vp`` and 10 hex digits: a bridge name is at most 15 characters, a pool name 56."""
    return "vp" + hashlib.sha256(pool.encode()).hexdigest()[:10]


def network_spec(pool: str, subnet: str) -> NetworkSpec:
    return NetworkSpec(network_name(pool), bridge_name(pool), subnet, "open")


@dataclass(frozen=True)
class Survey:
    """What a host already has: its libvirt networks (name -> CIDR) and its own addresses
    (ADDR/PREFIX, libvirt's bridges and loopback left out)."""

    networks: dict[str, str]
    addresses: tuple[str, ...]


def survey(host: Host) -> Survey:
    """What ``host`` has; a :class:`ConfigError` if vmctl is not root there (it sets routes)."""
    if (user := host.command(["id", "-u"], what="asking who vmctl is there").strip()) != "0":
        raise ConfigError(f"vmctl runs as user {user}, not root, on {host.uri}: it cannot set the pool's routes",
                          hint="connect as root (qemu+ssh://root@HOST/system), or run vmctl as root here")
    nets = host.hv.networks()
    shown = host.command(["ip", "-4", "-o", "addr", "show"], what="listing the host's addresses")
    return Survey({n.name: c for n in nets for c in n.cidrs[:1]},
                  tuple(parse_addresses(shown, skip=[n.bridge for n in nets if n.bridge])))


@dataclass(frozen=True)
class NetworkPlan:
    subnets: dict[str, str]  # host (as the pool names it) -> its /24
    routes: list[Route]


def plan(pool: str, hosts: Sequence[PoolHost], cidr: str, surveys: Mapping[str, Survey]) -> NetworkPlan:
    """Each host's /24 and the routes between them, once nothing on any host overlaps the
    range (but the pool's own network, with the subnet it should have)."""
    subnets = host_subnets(cidr, hosts)
    own = network_name(pool)
    for where, found in surveys.items():
        name = label(where)
        if (mine := found.networks.get(own)) and ipaddress.IPv4Interface(mine).network != \
                ipaddress.IPv4Network(subnets[where]):
            raise ConfigError(f"pool {pool}'s network on {name} has {mine}, not {subnets[where]} of range {cidr}",
                              hint=f"keep the pool's range and host order, or 'vmctl pool down {pool}' first")
        taken = {f"network {n} on {name} ({c})": c for n, c in found.networks.items() if n != own}
        taken |= {f"address {a} on {name}": a for a in found.addresses}
        if clash := overlaps(cidr, taken):
            raise ConfigError(f"pool range {cidr} overlaps {clash[0]}",
                              hint="choose another range with --range, for example 10.78.0.0/16")
    return NetworkPlan(subnets, plan_routes(subnets, {w: s.addresses for w, s in surveys.items()}))


def prepare(pool: str, hosts: Mapping[str, Host], net: NetworkPlan) -> None:
    """Make each host's network (started, autostarted) and set its routes (``ip route replace``:
    running it again changes nothing)."""
    for where, host in hosts.items():
        host.hv.ensure_network(network_name(pool), network_xml(network_spec(pool, net.subnets[where])))
    for route in net.routes:
        hosts[route.host].command(route.argv, what=f"adding the route to {route.subnet} via {route.via}")


def teardown(pool: str, hosts: Mapping[str, Host], subnets: Mapping[str, str]) -> list[str]:
    """Remove the pool's network and its routes from each host given; returns what went."""
    removed = []
    for where, host in hosts.items():
        if host.hv.remove_network(network_name(pool)):
            removed.append(f"network {network_name(pool)} on {label(where)}")
        for other, subnet in subnets.items():
            if other == where:
                continue
            try:
                host.command(["ip", "route", "del", subnet], what=f"removing the route to {subnet}")
                removed.append(f"route to {subnet} on {label(where)}")
            except VmctlError:
                pass  # not there (the link went with a host's namespace, or it was never added)
    return removed
