"""``up``: from a spec to a VM you can log into, phase by phase, every wait bounded.

Phases: define (overlay, seed, domain), start, ip, ssh, cloud_init. A failure
in any phase removes what this ``up`` created (unless ``keep_on_failure``) and
raises :class:`PhaseError` saying which phase, how long it waited, what it saw
last, and the tail of the serial console.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .._core.locks import file_lock
from .._core.paths import private_machines_dir
from .._core.poll import Look, wait_for
from .._core.progress import NoProgress, Progress
from .._core.relay import bind
from ..engine.install import install
from ..errors import CloudInitError, ConfigError, GuestSetupError, ImageError, PhaseError, VmctlError
from ..guest.cloudinit import MOUNT_KEYS, cloud_init_errors, parse_user_data, seed_data
from ..guest.keys import generate
from ..guest.seed import seed_iso
from ..hypervisor.console import read, tail
from ..hypervisor.disks import backing_file, copy_disk, grow_root_partition
from ..hypervisor.xml import domain_xml, network_xml
from ..images.boottest import boot_spec
from ..images.catalog import FAST_BOOT, Cache, CachedImage, shared_read_only
from ..model.mounts import Shares
from ..model.ports import overlapping, parse_all
from ..model.profiles import profile
from ..model.record import PHASES, Record
from ..model.spec import DEFAULT_NETWORK, DiskBoot, DomainSpec, KernelBoot, MachineSpec, NetworkChoice
from ..model.uri import is_remote
from . import forwarder
from .machine import FILE_SUFFIXES, Machine
from .shares import shares_for
from .storage import Storage

if TYPE_CHECKING:
    from .host import Host


@dataclass(frozen=True)
class Timeouts:
    """Upper bounds, in seconds, for each wait of ``up``."""

    start: float = 60
    ip: float = 300
    ssh: float = 300
    cloud_init: float = 900

    @classmethod
    def for_accel(cls, accel: str) -> Timeouts:
        """TCG guests boot 5-20x slower than KVM ones; the bounds follow."""
        return cls() if accel == "tcg" else cls(start=30, ip=120, ssh=120, cloud_init=300)


class Timeline:
    """When each step of one ``up`` ended, in seconds since the ``up`` began.

    ``up`` marks its phases (define, start, ip, ssh_banner, ssh, cloud_init,
    docker); the boot lab adds the serial console's milestones to the same clock.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, round(time.monotonic() - self.started, 3))


def new_mac() -> str:
    return "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def check_against_host(host: Host, spec: MachineSpec) -> None:
    cpus, memory = host.hv.host_limits()
    if spec.cpus > cpus:
        raise ConfigError(f"vCPUs {spec.cpus} is more than the host's {cpus}", hint=f"use --cpus 1..{cpus}")
    if spec.memory_mib > memory:
        raise ConfigError(f"memory {spec.memory_mib} MiB is more than the host's {memory} MiB")
    if is_remote(host.uri):
        if spec.mounts or spec.ports:
            raise ConfigError(f"{'shared folders' if spec.mounts else 'published ports'} need the hypervisor "
                              f"on this machine, not {host.uri}", hint="drop them, or run vmctl on that host")
        _ = host.jump  # a URI vmctl cannot reach guests through is refused now, not after a boot


def up(
    host: Host,
    spec: MachineSpec,
    progress: Progress = NoProgress(),
    keep_on_failure: bool = False,
    timeouts: Timeouts | None = None,
    timeline: Timeline | None = None,
    forward: bool = True,
    disk_from: Path | None = None,
) -> Machine:
    """Create, boot and provision VM ``spec.name``; an identical existing VM is returned as it is.

    With ``disk_from`` (``vmctl clone``) the new VM's disk is a copy of that stopped VM's
    disk instead of a new overlay of the image, and a VM of that name must not exist.

    With ``forward`` (the default) a Docker host or a VM with published ports gets its
    forwarder (:mod:`vmctl.machines.forwarder`) before this returns; the boot lab and
    bakes, whose VMs live for minutes, go without."""
    image = Cache().require(spec.image)
    asked, spec = spec, settle(host, spec, image)
    if not host.hv.exists(spec.name):  # (an existing VM keeps the boot it was made with)
        boot_for(image, spec)  # an image the profile cannot boot is refused before anything starts
    check_against_host(host, spec)
    spec = replace(spec, user=spec.user or image.user)  # (which checks the mounts against the user's home)
    shares = shares_for(spec, image)  # host directories exist; virtiofs, or 9p the image's kernel can mount
    extra = cloud_config(spec) or {}
    private_machines_dir()
    with file_lock(host.file(spec.name, "lock"), what=f"VM {spec.name}", progress=progress):
        def make_run(wanted: MachineSpec, machine: Machine | None = None) -> _Run:
            accel = machine.record.accel if machine else host.accelerator(progress)
            return _Run(host, wanted, progress, accel, timeouts or Timeouts.for_accel(accel), timeline or Timeline(),
                        shares, machine)

        if host.hv.exists(spec.name) and disk_from is not None:
            raise ConfigError(f"a VM named {spec.name!r} exists already", hint="choose another name for the clone")
        if host.hv.exists(spec.name):
            machine = _existing(host, asked, progress, make_run)
            return _forwarded(machine, progress) if forward else machine
        check_ports(host, spec)
        _clear_leftovers(host, spec.name, progress)
        run = make_run(spec)
        run.disk_from = disk_from
        try:
            machine = run.all(image, extra)
        except BaseException as e:  # clean up after anything, even Ctrl-C
            error = run.fail(e) if isinstance(e, VmctlError) else None
            if run.machine is not None:
                run.machine.close()
            if not keep_on_failure:
                host.delete_unlocked(spec.name)
            if error is None:
                raise
            raise error from e
    # the VM is complete: a forwarder's trouble does not undo it
    return _forwarded(machine, progress) if forward else machine


def fast_capable(image: CachedImage) -> bool:
    """Can the fast profile boot ``image``: a local build or bake with its kernel, the lean
    initramfs and the current fast-boot units (a pulled cloud image has none of them)."""
    return bool(image.kernel and image.lean_initrd) and image.fast_boot >= FAST_BOOT


def settle(host: Host, spec: MachineSpec, image: CachedImage) -> MachineSpec:
    """``spec`` with its profile settled: an existing VM's own, or for a new one the
    default for ``image`` (:meth:`MachineSpec.settled`)."""
    if host.hv.exists(spec.name):
        return spec.like(host.get(spec.name).spec)
    return spec.settled(fast_capable(image))


def check_ports(host: Host, spec: MachineSpec) -> None:
    """Each port the spec publishes is free on the host and no other VM's: before anything is made."""
    ports = parse_all(spec.ports)
    if not ports:
        return
    for other in host.list():
        if other.name != spec.name and (clash := overlapping(ports, parse_all(other.spec.ports))):
            mine, theirs = clash[0]
            raise ConfigError(f"port {mine}: VM {other.name} already publishes {theirs}",
                              hint="pick another host port ([ADDR:]HOSTPORT:GUESTPORT)")
    for port in ports:
        try:
            kind = socket.SOCK_DGRAM if port.proto == "udp" else socket.SOCK_STREAM
            bind(port.host_addr, port.host_port, kind).close()
        except OSError as e:
            raise ConfigError(f"port {port}: {port.family_addr}:{port.host_port}/{port.proto} on the host: "
                              f"{e.strerror or e}", hint="pick another host port, or stop what listens there") from e


def _forwarded(machine: Machine, progress: Progress) -> Machine:
    """The VM with its forwarder running (Docker socket, published ports), if it needs one.
    A published port that could not listen is an error; the VM itself is left up."""
    if not machine.needs_forwarder:
        return machine
    progress.phase("forwarding the Docker socket and ports")
    report = machine.forward()
    if failed := [p for p in report.get("ports", []) if p["source"] == "static" and p["state"] == "error"]:
        raise ConfigError(f"{machine.name} is up, but port {failed[0]['port']} is not: {failed[0]['error']}",
                          hint=f"'vmctl port rm {machine.name} {failed[0]['port']}', or free it and "
                          f"'vmctl restart {machine.name}'")
    return machine


def _clear_leftovers(host: Host, name: str, progress: Progress) -> None:
    """Files of a VM with no domain are what an ``up`` killed while defining it left: remove
    them (its own files only: not its lock, held now, nor a pool's ``NAME.pool.lock``)."""
    leftovers = [path for suffix in FILE_SUFFIXES if suffix != "lock" and (path := host.file(name, suffix)).exists()]
    if leftovers:
        forwarder.stop(host.dir, name)
        progress.phase(f"removing what an interrupted up of {name} left: {', '.join(p.name for p in leftovers)}")
        for path in leftovers:
            path.unlink(missing_ok=True)


def _existing(host: Host, asked: MachineSpec, progress: Progress,
              make_run: Callable[[MachineSpec, Machine], _Run]) -> Machine:
    machine = host.get(asked.name)
    spec = asked.like(machine.spec)
    if diffs := machine.spec.differences(spec):
        raise ConfigError(
            f"{spec.name} already exists with a different spec: {'; '.join(diffs)}",
            hint=f"'vmctl down {spec.name}' first, or ask for the spec it has",
        )
    if machine.missing_phases:  # an earlier up was interrupted: finish it
        progress.phase(f"resuming {spec.name}: {', '.join(machine.missing_phases)} left to do")
        return make_run(spec, machine).resume()
    if machine.state != "running":
        progress.phase("starting the existing VM")
        machine.start(forward=False)  # the caller starts the forwarder, if it wants one
    return machine


class _Run:
    """One ``up`` in progress: the phases, their timings, and what they waited on.

    Each finished phase is recorded in the VM's metadata (``Record.phases``), so
    an ``up`` killed at any point leaves a VM that says what it still lacks, and
    the next ``up`` of the same spec does only that (:meth:`resume`)."""

    def __init__(self, host: Host, spec: MachineSpec, progress: Progress, accel: str, timeouts: Timeouts,
                 timeline: Timeline, shares: Shares | None = None, machine: Machine | None = None) -> None:
        self.host, self.spec, self.progress, self.accel, self.timeouts = host, spec, progress, accel, timeouts
        self.timeline, self.shares = timeline, shares
        self.timings: dict[str, float] = {}
        self.phase, self.phase_started = "define", time.monotonic()
        self.machine = machine
        self.disk_from: Path | None = None  # a clone's source disk (see up)

    def step(self, phase: str, label: str, fn: Callable[[], object]) -> None:
        self.phase, self.phase_started = phase, time.monotonic()
        self.progress.phase(label)
        fn()
        self.timings[phase] = round(time.monotonic() - self.phase_started, 2)
        self.timeline.mark(phase)
        machine = self.machine
        if machine is not None and phase != "define":  # define writes its record with the domain
            done = tuple(p for p in PHASES if p in (*(machine.record.phases or ()), phase))
            machine.save(replace(machine.record, phases=done))

    def _steps(self) -> list[tuple[str, str, Callable[[], object]]]:
        steps: list[tuple[str, str, Callable[[], object]]] = [
            ("start", "starting QEMU", self.start),
            ("ip", "waiting for an address", self.wait_ip),
            ("ssh", "waiting for SSH", self.wait_ssh),
            ("cloud_init", self.ready_label(), self.wait_cloud_init),
        ]
        if self.spec.docker:
            steps.append(("docker", "installing Docker", self.install_docker))
        return steps

    def all(self, image: object, extra: dict[str, object]) -> Machine:
        started = time.monotonic()
        what = "copying the disk" if self.disk_from else "overlay"
        self.step("define", f"defining ({what}, seed, domain)", lambda: self.define(image, self.accel, extra))
        for phase, label, fn in self._steps():
            self.step(phase, label, fn)
        return self._finish(started)

    def resume(self) -> Machine:
        """Do the phases an interrupted ``up`` left undone. Starting and the waits for an
        address and SSH are always repeated (cheap on a running VM; the VM may have been
        stopped since); finished provisioning is not. A failure leaves the VM as it is,
        still incomplete, for another try."""
        started, machine = time.monotonic(), self.machine
        assert machine is not None
        missing = machine.missing_phases
        try:
            for phase, label, fn in self._steps():
                if phase in missing or phase in ("start", "ip", "ssh"):
                    self.step(phase, label, fn)
        except VmctlError as e:
            machine.close()
            raise self.fail(e) from e
        return self._finish(started)

    def _finish(self, started: float) -> Machine:
        assert self.machine is not None
        # What the first boot wrote (the host key, the user, Docker) on the guest's disk before
        # up says it is done: ext4 writes new files' data up to 30 s late, and a stock VM whose
        # QEMU was killed soon after its first boot came back with an empty host key file and no
        # sshd, for good (cloud-init does not redo an instance's keys; found by the e2e suite run
        # in reverse order, VMCTL_TEST_ORDER=reverse).
        self.machine.run("sync", timeout=self.timeouts.ssh)
        self.timings["total"] = round(time.monotonic() - started, 2)
        self.machine.save(replace(self.machine.record, timings=self.timings))
        return self.machine

    def define(self, image: object, accel: str, extra: dict[str, object]) -> None:
        assert isinstance(image, CachedImage)
        spec, host = self.spec, self.host
        storage = Storage(host.hv, self.progress)
        if NetworkChoice.parse(spec.network) == NetworkChoice("network", DEFAULT_NETWORK.name):
            # vmctl's own network, on a host vmctl has not prepared (a remote one, the system libvirtd)
            host.hv.ensure_network(DEFAULT_NETWORK.name, network_xml(DEFAULT_NETWORK))
        shared_read_only(image)
        image, base = storage.image(image)  # its files now the hypervisor's volumes
        boot = boot_for(image, spec)
        user = spec.user or image.user
        mac, host_key = new_mac(), generate(f"vmctl-{spec.name}")
        if self.disk_from is not None:  # a clone: the source's disk, on the same base (a local copy, for now)
            source_base = backing_file(self.disk_from)
            if source_base is None or source_base.name != base.name:  # only its top layer is copied
                raise ImageError(f"{spec.name}: the source's disk was made from another build of {image.name} "
                                 "than the cached one", hint=f"clone a VM made from the current {image.name}")
            disk = str(copy_disk(self.disk_from, host.file(spec.name, "qcow2"), Path(base.path)))
        else:
            disk = storage.overlay(spec.name, base, spec.disk_gib)
        if profile(spec.profile).host_grows_root and not is_remote(host.uri):
            grow_root_partition(Path(disk))  # (elsewhere the guest's vmctl-grow-root runs growpart)
        record = Record(
            spec=spec, user=user, host_key=host_key.public, mac=mac,
            instance_id=f"iid-{spec.name}-{secrets.token_hex(4)}", disk=disk, seed="",
            serial_log=storage.machine_file(spec.name, "serial.log"), accel=accel, netns=host.netns,
            created=time.time(), phases=("define",),  # true once the domain exists, as it does with this record
        )
        keys = [host.client_public_key(), *spec.ssh_keys]
        seed = seed_data(hostname=spec.name, instance_id=record.instance_id, user=user,
                         authorized_keys=keys, host_key=host_key, mac=mac, extra=extra,
                         meta_extra=profile(spec.profile).meta_data, shares=self.shares)
        record = replace(record, seed=storage.seed(spec.name, seed_iso(seed)))
        domain = DomainSpec(
            name=spec.name, disk=Path(record.disk), serial_log=Path(record.serial_log), base=Path(image.path),
            cpus=spec.cpus, memory_mib=spec.memory_mib, accel="kvm" if accel == "kvm" else "tcg",
            boot=boot, seed=Path(record.seed),
            network=NetworkChoice.parse(spec.network), mac=mac, metadata=record.to_json(), shares=self.shares,
        )
        host.hv.define(domain_xml(domain))
        self.machine = Machine(host, spec.name, record)

    def start(self) -> None:
        if self.host.hv.state(self.spec.name) != "running":
            self.host.hv.start(self.spec.name)

    def wait_ip(self) -> None:
        machine = self.machine
        assert machine is not None

        def address(_: Look) -> str | None:
            machine.check_alive()
            return machine.ip

        wait_for("an address (DHCP lease or guest agent)", address, self.timeouts.ip,
                 describe=lambda: "".join(machine.console_tail(1)))

    def wait_ssh(self) -> None:
        assert self.machine is not None
        self.machine.wait_ssh(self.timeouts.ssh, on_banner=lambda: self.timeline.mark("ssh_banner"))

    def ready_label(self) -> str:
        unit = profile(self.spec.profile).ready_unit
        return f"waiting for the guest to be ready ({unit})" if unit else "waiting for cloud-init to finish"

    def wait_cloud_init(self) -> None:
        """The VM is what ``up`` promises: the profile's ready unit reached, and cloud-init
        done when it runs at all (a fast VM without user-data never starts it)."""
        assert self.machine is not None
        if unit := profile(self.spec.profile).ready_unit:
            self._wait_unit(unit)
            if cloud_config(self.spec) is not None:
                self._check_cloud_init_result()
            return
        result = self.machine.run("cloud-init status --wait", timeout=self.timeouts.cloud_init)
        # cloud-init 23.4+ exits 2 for "done, with recoverable errors"
        if result.rc not in (0, 2) or "status: done" not in result.stdout:
            detail = self.machine.run("cloud-init status --long").stdout.strip().replace("\n", "; ")
            raise CloudInitError(self.spec.name, result.rc, detail)

    def _wait_unit(self, unit: str) -> None:
        """``systemctl start UNIT`` joins the boot's own job for it and returns when it is
        done: at once if it already is, non-zero if something it requires failed."""
        assert self.machine is not None
        result = self.machine.run(["sudo", "systemctl", "start", unit], timeout=self.timeouts.cloud_init)
        if result.rc != 0:
            failed = self.machine.run("systemctl --failed --no-legend --plain | cut -d' ' -f1").stdout.split()
            raise GuestSetupError(self.spec.name, unit, result.tail(), failed)

    def _check_cloud_init_result(self) -> None:
        """cloud-init's own verdict, from the file each of its stages writes (no Python start)."""
        assert self.machine is not None
        text = self.machine.run("cat /run/cloud-init/status.json").stdout
        errors = cloud_init_errors(text)
        if errors:
            raise CloudInitError(self.spec.name, 1, "; ".join(errors))

    def install_docker(self) -> None:
        assert self.machine is not None
        # a Swarm node runs without live-restore: the two are incompatible
        install(self.machine, live_restore=not self.spec.pool, progress=self.progress)

    def fail(self, cause: VmctlError) -> PhaseError:
        waited = time.monotonic() - self.phase_started
        console = tail(read(self.host.file(self.spec.name, "serial.log")), 10)
        return PhaseError(self.spec.name, self.phase, waited, cause, console)


def boot_for(image: CachedImage, spec: MachineSpec) -> DiskBoot | KernelBoot:
    """The image's boot, with the profile's kernel arguments on a direct kernel boot."""
    boot = boot_spec(image, spec.boot_mode)
    chosen = profile(spec.profile)
    if isinstance(boot, KernelBoot):
        boot = replace(boot, cmdline=chosen.cmdline(boot.cmdline, cloud_config(spec)))
        if chosen.initrd == "lean":
            boot = replace(boot, initrd=lean_initrd(image, chosen.name))
    return boot


def cloud_config(spec: MachineSpec) -> dict[str, object] | None:
    """The cloud-config the profile and the user's user-data give cloud-init (merged into
    vmctl's own by the seed), or None when nothing needs cloud-init to run: no user-data
    and no shared folders (whose fstab lines cloud-init writes). Without either, the
    fast profile does everything vmctl's own cloud-config asks for itself."""
    user = parse_user_data(spec.user_data)
    if not user and not spec.mounts:
        return None
    return profile(spec.profile).under(user, MOUNT_KEYS if spec.mounts else ())


def lean_initrd(image: CachedImage, profile_name: str) -> Path:
    """The image's lean initramfs; an image built before it, or before the fast profile's
    current units (``FAST_BOOT``), is refused here rather than left to time out."""
    if not image.lean_initrd or image.fast_boot < FAST_BOOT:
        raise ImageError(
            f"image {image.name!r} predates the {profile_name} profile: "
            "it has no lean initramfs or fast-boot units",
            hint=f"rebuild it ('vmctl image build {image.name}' for a built image; "
            "re-bake a baked one from a new base)",
        )
    return Path(image.lean_initrd)
