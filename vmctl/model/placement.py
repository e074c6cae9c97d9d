"""Where a pool's nodes go when it spans several hypervisor hosts, and how the hosts'
networks fit together. Pure: parsing, arithmetic and plans, no I/O.

- :class:`PoolHost`: one ``URI[=WEIGHT]`` of ``--hosts``.
- :func:`place`: node index -> host, by weight, with the managers spread first.
- :func:`host_subnets`: each host's /24 out of the pool's range.
- :func:`plan_routes`: on each host, a route to every other host's /24 through the
  address that other host has on a network both share (their LAN).
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError

LOCAL = "local"  # this machine's hypervisor: --connect's, else vmctl's runtime
DEFAULT_RANGE = "10.77.0.0/16"
MAX_WEIGHT = 100


@dataclass(frozen=True)
class PoolHost:
    """A hypervisor of a pool: its libvirt URI as the client names it (``local`` for this
    machine's) and its weight, the share of the nodes it gets."""

    uri: str
    weight: int = 1

    def __post_init__(self) -> None:
        if self.uri != LOCAL and not re.fullmatch(r"[a-z0-9+]+://[^\s,]*", self.uri):
            raise ConfigError(f"invalid host {self.uri!r}: not a libvirt URI",
                              hint="use local, or a URI such as qemu+ssh://root@host-b/system")
        if not _whole(self.uri):  # (so that URI=WEIGHT reads back as it was written)
            raise ConfigError(f"invalid host {self.uri!r}: every query parameter needs KEY=VALUE")
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ConfigError(f"invalid weight {self.weight} for host {self.uri}: use 1-{MAX_WEIGHT}",
                              hint="a host that should get no nodes is left out of --hosts")

    @classmethod
    def parse(cls, text: str) -> PoolHost:
        """``URI`` or ``URI=WEIGHT``. A URI's query ends in ``KEY=VALUE`` too: ``=N`` is the
        weight only when what is left before it is still a whole URI (no query item
        without its ``=``), so ``...?no_tty=1`` is a URI and ``...?no_tty=1=2`` weight 2."""
        text = text.strip()
        head, sep, tail = text.rpartition("=")
        if sep and re.fullmatch(r"-?\d+", tail) and _whole(head):
            return cls(head, int(tail))
        if sep and ("?" not in text or not _whole(text)):  # an '=' outside a query is a weight
            raise ConfigError(f"invalid host {text!r}: the weight after '=' must be a whole number",
                              hint="URI=WEIGHT, for example qemu+ssh://host-b/system=2")
        return cls(text)

    @property
    def label(self) -> str:
        return label(self.uri)

    def __str__(self) -> str:
        return f"{self.uri}={self.weight}"


def label(uri: str) -> str:
    """A short name for a host: ``local``, else its URI's ``HOST[:PORT]``."""
    if uri in (LOCAL, ""):
        return LOCAL
    parts = urlsplit(uri)
    return parts.netloc.rpartition("@")[2] or parts.path or uri


def _whole(uri: str) -> bool:
    """Whether ``uri`` is a URI with every query item ``KEY=VALUE`` (or ``local``)."""
    if uri == LOCAL:
        return True
    if "://" not in uri:
        return False
    query = urlsplit(uri).query
    return not query or all("=" in item for item in query.split("&"))


def parse_hosts(items: Sequence[str | PoolHost]) -> tuple[PoolHost, ...]:
    """``--hosts`` values (each may hold several, comma-separated; PoolHosts are kept as they
    are), checked: no host twice, and ``local`` (the host vmctl connects to) among them."""
    hosts: list[PoolHost] = []
    for item in items:
        hosts += [item] if isinstance(item, PoolHost) else [PoolHost.parse(t) for t in item.split(",") if t.strip()]
    seen = Counter(h.uri for h in hosts)
    if twice := [uri for uri, n in seen.items() if n > 1]:
        raise ConfigError(f"host {twice[0]} is listed twice", hint="give each host once, with a weight: URI=2")
    if hosts and LOCAL not in seen:
        raise ConfigError("the hosts of a pool must include local, the host vmctl connects to",
                          hint="for example --hosts local,qemu+ssh://root@host-b/system; node 1 (the first "
                          "manager, whose record the pool's commands read) stays there")
    return tuple(hosts)


def place(size: int, managers: int, hosts: Sequence[PoolHost],
          existing: Mapping[int, str] | None = None) -> dict[int, str]:
    """Node index (1..size) -> host URI. Nodes already placed (``existing``) stay where they are.

    Node 1 goes to ``local`` (the host vmctl connects to), where the pool's commands read
    its records. Managers (indexes 1..managers) go to the host with the fewest managers, so
    no host holds more than its even share of them: with an odd number of managers, three
    or more, over three or more hosts, losing any one host leaves the quorum. Then each
    further node goes to the host that is furthest below its weight's share (the smallest
    ``(count + 1) / weight``). Ties go to the host listed first."""
    if not hosts:
        raise ConfigError("a pool needs at least one host")
    placed = dict(existing or {})
    order = {h.uri: i for i, h in enumerate(hosts)}
    weight = {h.uri: h.weight for h in hosts}
    count = Counter(uri for uri in placed.values() if uri in order)
    bosses = Counter(uri for i, uri in placed.items() if i <= managers and uri in order)
    for index in range(1, size + 1):
        if index in placed:
            continue
        if index == 1 and LOCAL in order:
            uri = LOCAL
            bosses[uri] += 1
        elif index <= managers:
            uri = min(order, key=lambda u: (bosses[u], (count[u] + 1) / weight[u], order[u]))
            bosses[uri] += 1
        else:
            uri = min(order, key=lambda u: ((count[u] + 1) / weight[u], order[u]))
        placed[index] = uri
        count[uri] += 1
    return {i: placed[i] for i in sorted(placed) if i <= size}


def check_pool_range(cidr: str, hosts: int) -> ipaddress.IPv4Network:
    """The pool's range: IPv4, with a /24 for each host."""
    try:
        net = ipaddress.IPv4Network(cidr)
    except ValueError as e:
        raise ConfigError(f"invalid pool range {cidr!r}: {e}", hint=f"for example {DEFAULT_RANGE}") from e
    if net.prefixlen > 24 or 2 ** (24 - net.prefixlen) < hosts:
        raise ConfigError(f"pool range {cidr} has no room for a /24 per host ({hosts} hosts)",
                          hint=f"use a larger range, for example {DEFAULT_RANGE}")
    return net


def host_subnets(cidr: str, hosts: Sequence[PoolHost]) -> dict[str, str]:
    """Host URI -> its /24: the range's first /24 for the first host listed, and so on."""
    subnets = check_pool_range(cidr, len(hosts)).subnets(new_prefix=24)
    return {h.uri: str(next(subnets)) for h in hosts}


def overlaps(cidr: str, taken: Mapping[str, str]) -> list[str]:
    """The names in ``taken`` (name -> CIDR) whose network overlaps ``cidr``."""
    net = ipaddress.IPv4Network(cidr)
    return [name for name, other in taken.items() if net.overlaps(ipaddress.IPv4Network(other, strict=False))]


@dataclass(frozen=True)
class Route:
    host: str  # the URI of the host that gets the route
    subnet: str  # another host's /24
    via: str  # that host's address on a network both share

    @property
    def argv(self) -> list[str]:
        return ["ip", "route", "replace", self.subnet, "via", self.via]


def plan_routes(subnets: Mapping[str, str], addresses: Mapping[str, Sequence[str]]) -> list[Route]:
    """On each host, a route to each other host's /24 via that host's LAN address.

    ``addresses``: host URI -> its interface addresses (``ADDR/PREFIX``), vmctl's own
    bridges left out. Two hosts share a LAN when an address of one lies in the network
    of an address of the other. A pair with none is a :class:`ConfigError` that says
    exactly which route to add by hand."""
    routes = []
    for here in subnets:
        mine = [ipaddress.IPv4Interface(a) for a in addresses.get(here, ())]
        for there, subnet in subnets.items():
            if there == here:
                continue
            theirs = [ipaddress.IPv4Interface(a) for a in addresses.get(there, ())]
            via = next((t.ip for t in theirs for m in mine if t.ip in m.network and t.ip != m.ip), None)
            if via is None:
                raise ConfigError(
                    f"hosts {here} and {there} share no network vmctl can see, so {subnet} cannot be routed",
                    hint=f"link them, or add on {here}: ip route add {subnet} via <{there}'s address>",
                )
            routes.append(Route(here, subnet, str(via)))
    return routes


def parse_addresses(ip_output: str, skip: Sequence[str] = ()) -> list[str]:
    """``ADDR/PREFIX`` of each global IPv4 address in ``ip -4 -o addr show`` output, but
    those of the interfaces in ``skip`` (libvirt's bridges) and of loopback."""
    found = []
    for line in ip_output.splitlines():
        fields = line.split()
        scope = fields[fields.index("scope") + 1] if "scope" in fields[:-1] else ""
        if len(fields) >= 4 and fields[2] == "inet" and scope == "global" and \
                fields[1].partition("@")[0] not in ("lo", *skip):
            found.append(fields[3])
    return found
