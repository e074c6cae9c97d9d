"""What a user asks for, as validated, immutable values. No I/O here."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .errors import ConfigError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
BootMode = Literal["disk", "kernel"]
Accel = Literal["kvm", "tcg"]
NetMode = Literal["isolated", "nat"]


def check_name(name: str, what: str = "name") -> str:
    """Accept a DNS-label-like name: lower-case letters, digits, inner dashes, 1-63."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"invalid {what} {name!r}: use 1-63 lower-case letters, digits and inner dashes",
            hint="for example: web-1",
        )
    return name


def check_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{what} {value} is out of range {low}-{high}")
    return value


@dataclass(frozen=True)
class NetworkSpec:
    """A libvirt network with DHCP: ``isolated`` (no forward) or ``nat``."""

    name: str = "vmctl"
    bridge: str = "vmctlbr0"
    cidr: str = "192.168.150.0/24"
    mode: NetMode = "isolated"

    def __post_init__(self) -> None:
        check_name(self.name, "network name")
        if not re.match(r"^[a-zA-Z0-9_-]{1,15}$", self.bridge):
            raise ConfigError(f"invalid bridge name {self.bridge!r}: 1-15 letters, digits, - or _")
        try:
            net = ipaddress.IPv4Network(self.cidr)
        except ValueError as e:
            raise ConfigError(f"invalid network {self.cidr!r}: {e}") from e
        if net.num_addresses < 16:
            raise ConfigError(f"network {self.cidr} is too small: use /28 or larger")

    @property
    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def gateway(self) -> str:
        return str(self._net.network_address + 1)

    @property
    def prefix(self) -> int:
        return self._net.prefixlen

    @property
    def dhcp_start(self) -> str:
        return str(self._net.network_address + 10)

    @property
    def dhcp_end(self) -> str:
        return str(self._net.broadcast_address - 1)


@dataclass(frozen=True)
class DiskBoot:
    """Firmware (SeaBIOS) and the image's own boot loader."""

    mode: Literal["disk"] = "disk"


@dataclass(frozen=True)
class KernelBoot:
    """Direct kernel boot with the image's extracted kernel and initrd."""

    kernel: Path
    initrd: Path
    cmdline: str
    mode: Literal["kernel"] = "kernel"


@dataclass(frozen=True)
class DomainSpec:
    """Everything the domain template needs; paths already resolved."""

    name: str
    disk: Path
    serial_log: Path
    cpus: int = 2
    memory_mib: int = 1024
    accel: Accel = "tcg"
    boot: DiskBoot | KernelBoot = field(default_factory=DiskBoot)
    seed: Path | None = None
    network: str | None = "vmctl"
    uuid: str | None = None
    metadata: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        check_range(self.cpus, 1, 64, "vCPUs")
        check_range(self.memory_mib, 128, 1024 * 1024, "memory (MiB)")
