"""``vmctl doctor``: is this host ready to run vmctl's VMs, and with which accelerator?"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ._core.paths import machines_dir
from ._core.progress import NoProgress, Progress
from .errors import VmctlError
from .hypervisor import accel as _accel
from .hypervisor.driver import Hypervisor
from .hypervisor.runtime import Runtime, resolve_uri
from .images.catalog import Cache
from .machines.host import Host
from .machines.storage import IMAGES_POOL, MACHINES_POOL
from .model.spec import DEFAULT_NETWORK
from .model.uri import is_remote

MIN_FREE_GIB = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    accel: str | None = None
    uri: str | None = None
    probes: list[dict[str, object]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "accel": self.accel, "uri": self.uri,
                "checks": [asdict(c) for c in self.checks], "probes": self.probes}


def _check(report: Report, name: str, fn: Callable[[], str]) -> None:
    try:
        report.checks.append(Check(name, True, fn()))
    except VmctlError as e:
        report.checks.append(Check(name, False, e.message, e.hint))


def _binaries() -> str:
    missing = [b for b in ("qemu-system-x86_64", "qemu-img") if shutil.which(b) is None]
    if missing:
        raise VmctlError(f"not installed: {', '.join(missing)}", hint="apt-get install qemu-system-x86 qemu-utils")
    return _accel.qemu_version()


def _storage() -> str:
    directory = machines_dir()
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free / 2**30
    if free < MIN_FREE_GIB:
        raise VmctlError(f"only {free:.1f} GiB free in {directory}", hint="free disk space or set VMCTL_STATE_DIR")
    return f"{directory}: {free:.0f} GiB free; {len(Cache().images())} cached image(s)"


def _libvirt(report: Report, uri: str | None) -> None:
    try:
        report.uri = resolve_uri(uri)
        hv = Hypervisor(report.uri)
    except VmctlError as e:
        report.checks.append(Check("libvirt", False, e.message, e.hint))
        return
    with hv:
        _check(report, "libvirt", lambda: _describe(hv))
        _check(report, "network", lambda: _network(hv))
        _check(report, "storage pool", lambda: _pool(hv))


def _describe(hv: Hypervisor) -> str:
    info = hv.info()
    runtime = " (vmctl runtime)" if hv.uri == Runtime().uri else ""
    return f"{info.uri}{runtime}: libvirt {info.libvirt_version}, {info.hypervisor} {info.hypervisor_version}"


def _network(hv: Hypervisor) -> str:
    name = DEFAULT_NETWORK.name
    if not hv.network_active(name):
        raise VmctlError(f"network {name!r} is not active", hint="run 'vmctl hypervisor start'")
    return f"{name}: active, {DEFAULT_NETWORK.cidr}"


def _pool(hv: Hypervisor) -> str:
    found = []
    for name in (MACHINES_POOL, IMAGES_POOL):
        path = hv.storage_pool_path(name)
        if path is None:
            raise VmctlError(f"storage pool {name!r} is not defined", hint="run 'vmctl hypervisor start'")
        found.append(f"{name}: {path}")
    return ", ".join(found)


def _probe(report: Report, reprobe: bool) -> str:
    return _verdict(report, _accel.decide(reprobe=reprobe))


def _verdict(report: Report, verdict: _accel.Verdict) -> str:
    """Put ``verdict`` in the report; its one-line summary."""
    report.accel = verdict.accel
    report.probes = [asdict(p) for p in verdict.probes]
    seen = "; ".join(f"{p.accel}: {'boots' if p.ok else 'fails'} ({p.seconds}s, {p.seen})" for p in verdict.probes)
    return f"using {verdict.accel} ({seen})"


def _remote(report: Report, uri: str, reprobe: bool, progress: Progress) -> Report:
    """The checks of :func:`diagnose`, run on the remote host ``uri``: its sshd (the host key
    checked), its QEMU, its libvirt, network and pools, the space in its pool, and its
    accelerator, found by booting its own kernel there."""
    report.uri = uri
    try:
        host = Host(uri)
    except VmctlError as e:
        report.checks.append(Check("libvirt", False, e.message, e.hint))
        return report
    with host:
        _check(report, "ssh", lambda: _remote_shell(host))
        shell = report.checks[-1].ok  # (only a qemu+ssh:// host lets vmctl run commands there)
        progress.phase("checking QEMU, libvirt, network and storage there")
        if shell:
            _check(report, "qemu", lambda: host.command(
                ["sh", "-c", f"command -v qemu-img >/dev/null && {_accel.QEMU} --version | head -n 1"],
                what="finding qemu-system-x86_64 and qemu-img", timeout=30).strip())
        _check(report, "libvirt", lambda: _describe(host.hv))
        _check(report, "network", lambda: _network(host.hv))
        _check(report, "storage pool", lambda: _remote_pools(host.hv))
        if shell:
            progress.phase("probing the accelerator there: booting its kernel under kvm, then tcg")
            _check(report, "accelerator", lambda: _verdict(report, host.remote_verdict(reprobe)))
    return report


def _remote_shell(host: Host) -> str:
    jump = host.jump
    assert jump is not None  # a remote URI: it is refused above unless it names an sshd
    return (f"{jump.host.user}@{jump.host.known_hosts_id}: host key matches; "
            + host.command(["uname", "-sr"], what="running a command").strip())


def _remote_pools(hv: Hypervisor) -> str:
    found = []
    for name in (MACHINES_POOL, IMAGES_POOL):
        free = hv.storage_pool_free(name)
        if free is None:
            found.append(f"{name}: not defined yet ('vmctl up' defines it)")
        elif free < MIN_FREE_GIB << 30:
            raise VmctlError(f"only {free / 2**30:.1f} GiB free in storage pool {name} on {hv.uri}",
                             hint="free disk space there")
        else:
            found.append(f"{name}: {hv.storage_pool_path(name)}, {free / 2**30:.0f} GiB free")
    return ", ".join(found)


def diagnose(uri: str | None = None, reprobe: bool = False, progress: Progress = NoProgress()) -> Report:
    """Run every check, on this machine or on the remote host ``uri``; never raises for a failed check."""
    report = Report()
    if uri and is_remote(uri):
        return _remote(report, uri, reprobe, progress)
    progress.phase("checking QEMU")
    _check(report, "qemu", _binaries)
    progress.phase("checking libvirt, network and storage")
    _libvirt(report, uri)
    _check(report, "storage", _storage)
    if reprobe or _accel.cached_verdict() is None:
        progress.phase("probing the accelerator: booting a kernel under kvm and tcg at once")
    _check(report, "accelerator", lambda: _probe(report, reprobe))
    return report
