"""Published ports: ``[ADDR:]HOSTPORT:GUESTPORT[/tcp|/udp]``, as Docker writes them.

A port spec names a socket on the host (``ADDR``, 127.0.0.1 unless the user
names another address, so nothing listens beyond loopback by default) and the
guest port it forwards to. Pure values: parsing and checking, no sockets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

Proto = Literal["tcp", "udp"]
LOOPBACK = "127.0.0.1"
SPEC_RE = re.compile(
    r"(?:(?P<addr>\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(?P<host>\d{1,5}):(?P<guest>\d{1,5})(?:/(?P<proto>[a-z]+))?"
)
HINT = "use [ADDR:]HOSTPORT:GUESTPORT[/tcp|/udp], for example 8080:80 or 127.0.0.1:5353:53/udp"


@dataclass(frozen=True, order=True)
class PortSpec:
    """One forward: ``host_addr:host_port`` on the host to ``guest_port`` in the VM."""

    host_port: int
    guest_port: int
    proto: Proto = "tcp"
    host_addr: str = LOOPBACK

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        """``8080:80``, ``0.0.0.0:8080:80``, ``[::1]:8080:80``, ``5353:53/udp``."""
        m = SPEC_RE.fullmatch(text.strip())
        if m is None:
            raise ConfigError(f"invalid port {text!r}", hint=HINT)
        proto = m["proto"] or "tcp"
        if proto not in ("tcp", "udp"):
            raise ConfigError(f"invalid port {text!r}: protocol {proto!r} is not tcp or udp", hint=HINT)
        addr = (m["addr"] or LOOPBACK).strip("[]")
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise ConfigError(f"invalid port {text!r}: {addr!r} is not an IP address", hint=HINT) from None
        host, guest = int(m["host"]), int(m["guest"])
        for port in (host, guest):
            if not 1 <= port <= 65535:
                raise ConfigError(f"invalid port {text!r}: {port} is not in 1-65535", hint=HINT)
        return cls(host, guest, "udp" if proto == "udp" else "tcp", addr)

    @property
    def family_addr(self) -> str:
        """The host address as it goes into a URL or a spec: IPv6 in brackets."""
        return f"[{self.host_addr}]" if ":" in self.host_addr else self.host_addr

    @property
    def key(self) -> tuple[str, int, str]:
        """What two forwards may not share: the host socket."""
        return (self.host_addr, self.host_port, self.proto)

    def __str__(self) -> str:
        return f"{self.family_addr}:{self.host_port}:{self.guest_port}/{self.proto}"


def parse_all(texts: Iterable[str]) -> tuple[PortSpec, ...]:
    """Every spec parsed, sorted; two that would listen on one host socket are refused."""
    ports = sorted(PortSpec.parse(t) for t in texts)
    seen: dict[tuple[str, int, str], PortSpec] = {}
    for port in ports:
        if (clash := _clash(seen, port)) is not None:
            raise ConfigError(f"ports {clash} and {port} both want host port {port.host_port}/{port.proto}",
                              hint="give each forward its own host port")
        seen[port.key] = port
    return tuple(ports)


def _clash(seen: dict[tuple[str, int, str], PortSpec], port: PortSpec) -> PortSpec | None:
    """A forward already on the same host port and protocol at this address, or at a wildcard."""
    for other in seen.values():
        same = (other.host_port, other.proto) == (port.host_port, port.proto)
        wildcard = {other.host_addr, port.host_addr} & {"0.0.0.0", "::"}
        if same and (other.host_addr == port.host_addr or wildcard):
            return other
    return None


def overlapping(mine: Iterable[PortSpec], theirs: Iterable[PortSpec]) -> list[tuple[PortSpec, PortSpec]]:
    """Pairs of forwards, one from each side, that would listen on one host socket."""
    seen = {p.key: p for p in theirs}
    return [(p, clash) for p in mine if (clash := _clash(seen, p)) is not None]
