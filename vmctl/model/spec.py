"""What a user asks for, as validated, immutable values.

No I/O here, except reading the boot profiles that ship with vmctl (``templates/profiles``),
once, through :mod:`vmctl.model.profiles`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from .mounts import Mount, Shares, parse_mounts
from .ports import parse_all
from .profiles import profile

NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
BootMode = Literal["disk", "kernel"]
Accel = Literal["kvm", "tcg"]
NetMode = Literal["isolated", "nat", "open"]


def check_name(name: str, what: str = "name") -> str:
    """Accept a DNS-label-like name: lower-case letters, digits, inner dashes, 1-63."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"invalid {what} {name!r}: use 1-63 lower-case letters, digits and inner dashes",
            hint="for example: web-1",
        )
    return name


MAX_CPUS = 64
MIN_MEMORY = 256
MAX_MEMORY = 1024 * 1024


def check_range(value: int, low: int, high: int, what: str) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{what} {value} is out of range {low}-{high}")
    return value


@dataclass(frozen=True)
class NetworkSpec:
    """A libvirt network with DHCP: ``isolated`` (no forward), ``nat``, or ``open`` (routed
    by the host, with no firewall rules from libvirt: a pool's network across hosts)."""

    name: str = "vmctl"
    bridge: str = "vmctlbr0"
    cidr: str = "192.168.150.0/24"
    mode: NetMode = "isolated"

    def __post_init__(self) -> None:
        check_name(self.name, "network name")
        if not re.fullmatch(r"[a-zA-Z0-9_-]{1,15}", self.bridge):
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


DEFAULT_NETWORK = NetworkSpec()


@dataclass(frozen=True)
class NetworkChoice:
    """Where a VM's NIC attaches.

    ``network:NAME`` a libvirt network (the runtime's isolated ``vmctl`` by
    default, or a NAT network such as ``default``), ``bridge:NAME`` a host
    bridge, ``user`` QEMU user-mode networking (for ``qemu:///session``).
    """

    kind: Literal["network", "bridge", "user"] = "network"
    source: str = "vmctl"

    @classmethod
    def parse(cls, text: str) -> NetworkChoice:
        kind, _, source = text.partition(":")
        if text == "user":
            return cls("user", "")
        if kind == "network" and source:
            check_name(source, "network name")
            return cls("network", source)
        if kind == "bridge" and re.fullmatch(r"[a-zA-Z0-9_.-]{1,15}", source):
            return cls("bridge", source)
        if not source and NAME_RE.fullmatch(text):
            return cls("network", text)
        raise ConfigError(
            f"invalid network {text!r}", hint="use NAME, network:NAME, bridge:BRIDGE or user"
        )

    def __str__(self) -> str:
        return "user" if self.kind == "user" else f"{self.kind}:{self.source}"


MAC_RE = re.compile(r"52:54:00(:[0-9a-f]{2}){3}")


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
class VolumeSpec:
    """A storage volume for libvirt to create in a pool: a qcow2 overlay on ``backing``
    (a path on the hypervisor), or an empty ``raw`` file that an upload fills."""

    name: str
    capacity: int  # bytes
    format: Literal["qcow2", "raw"] = "qcow2"
    mode: int = 0o600
    backing: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"invalid volume name {self.name!r}", hint="a file name, without '/'")
        if self.capacity < 0:
            raise ConfigError(f"volume {self.name}: capacity {self.capacity} is negative")


@dataclass(frozen=True)
class DomainSpec:
    """Everything the domain template needs; paths already resolved."""

    name: str
    disk: Path
    serial_log: Path
    base: Path | None = None  # the disk's backing image: shared, so QEMU may read it and never own it
    cpus: int = 2
    memory_mib: int = 1024
    accel: Accel = "tcg"
    # TCG only: the translated-code cache, in MiB (QEMU's own default, 1 GiB, is
    # filled by a Docker host and then held for good; 256 cost no speed in the lab)
    tcg_cache_mib: int = 256
    boot: DiskBoot | KernelBoot = field(default_factory=DiskBoot)
    seed: Path | None = None
    network: NetworkChoice | None = field(default_factory=NetworkChoice)
    mac: str | None = None
    metadata: str = ""
    shares: Shares | None = None  # shared folders, if any (memory is then shared for virtiofs)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_range(self.cpus, 1, MAX_CPUS, "vCPUs")
        check_range(self.memory_mib, MIN_MEMORY, MAX_MEMORY, "memory (MiB)")
        if self.mac is not None and not MAC_RE.fullmatch(self.mac):
            raise ConfigError(f"invalid MAC address {self.mac!r}: use 52:54:00:xx:xx:xx")


@dataclass(frozen=True)
class MachineSpec:
    """What ``vmctl up`` is asked for; compared field by field on a second ``up``."""

    name: str
    image: str = "debian-12"
    cpus: int = 2
    memory_mib: int = 1024
    disk_gib: int = 10
    boot: BootMode | None = None  # disk unless the profile says otherwise (None until the profile is settled)
    network: str = "vmctl"
    user: str | None = None
    ssh_keys: tuple[str, ...] = ()
    user_data: str = ""  # extra cloud-config, YAML text, merged into vmctl's
    docker: bool = False
    pool: str = ""  # the Swarm pool this VM belongs to, if any
    # a node of a pool over several hosts: the host it was placed on (``local`` or a libvirt URI,
    # as the pool names it), the pool's hosts (``URI=WEIGHT``, in order) and its network range
    hypervisor: str = ""
    pool_hosts: tuple[str, ...] = ()
    pool_range: str = ""
    # boot profile: stock, or fast (which boots the kernel directly); "" until settled by
    # ``settled`` (a new VM: fast where the image can boot it) or ``like`` (an existing one's)
    profile: str = ""
    ports: tuple[str, ...] = ()  # published ports, normalised: "127.0.0.1:8080:80/tcp"
    mounts: tuple[str, ...] = ()  # shared folders, normalised: "/srv/app:/srv/app", "/srv/cfg:/cfg:ro"

    def __post_init__(self) -> None:
        check_name(self.name)
        check_name(self.image, "image name")
        check_range(self.cpus, 1, MAX_CPUS, "vCPUs")
        check_range(self.memory_mib, MIN_MEMORY, MAX_MEMORY, "memory (MiB)")
        check_range(self.disk_gib, 1, 2048, "disk size (GiB)")
        if self.boot not in (None, "disk", "kernel"):
            raise ConfigError(f"invalid boot mode {self.boot!r}: use disk or kernel")
        NetworkChoice.parse(self.network)
        if self.user is not None:
            check_user(self.user)
        if self.pool:
            check_name(self.pool, "pool name")
        if self.profile:
            forced = profile(self.profile).boot
            if forced and self.boot not in (None, forced):
                raise ConfigError(f"profile {self.profile!r} needs boot mode {forced!r}, not {self.boot!r}",
                                  hint="leave the boot mode (--boot) out, or use profile 'stock'")
            object.__setattr__(self, "boot", self.boot or forced or "disk")
        object.__setattr__(self, "ports", tuple(str(p) for p in parse_all(self.ports)))
        object.__setattr__(self, "mounts", tuple(str(m) for m in parse_mounts(self.mounts, self.user)))

    @property
    def boot_mode(self) -> BootMode:
        """``boot`` as settled with the profile (from the profile, or disk)."""
        assert self.boot is not None, f"the profile of {self.name} is not settled"
        return self.boot

    def settled(self, fast_capable: bool) -> MachineSpec:
        """This spec for a new VM: with no profile asked for, the fast one where the image
        can boot it (and no disk boot was asked for), else stock."""
        if self.profile:
            return self
        fast = fast_capable and self.boot in (None, "kernel")
        return replace(self, profile="fast" if fast else "stock")

    def like(self, existing: MachineSpec) -> MachineSpec:
        """This spec as asked of an existing VM: what it leaves open (the login user, the
        profile) is the VM's, so a default that changed since does not change the VM."""
        user = self.user or existing.user
        if self.profile:
            return replace(self, user=user)
        return replace(self, user=user, profile=existing.profile, boot=self.boot or existing.boot)

    @property
    def shared_folders(self) -> tuple[Mount, ...]:
        """``mounts`` as values (they were checked at construction)."""
        return parse_mounts(self.mounts, self.user)

    def to_dict(self) -> dict[str, object]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> MachineSpec:
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        known.setdefault("profile", "stock")  # a record from before profiles
        for key, value in known.items():  # JSON has lists where the spec keeps tuples
            if isinstance(value, list):
                known[key] = tuple(value)
        return cls(**known)  # type: ignore[arg-type]

    def differences(self, other: MachineSpec) -> list[str]:
        """``field: ours -> theirs`` for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {mine[k]!r} -> {theirs[k]!r}" for k in mine if mine[k] != theirs[k]]


USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def check_user(user: str) -> str:
    if not USER_RE.match(user) or user == "root":
        raise ConfigError(f"invalid login user {user!r}: a lower-case Unix name, not root")
    return user
