"""``vmctl lab boot``: how long a VM takes to come up, phase by phase, against a container.

Each run creates a VM with :func:`vmctl.lifecycle.up` on one clock (its
:class:`~vmctl.lifecycle.Timeline`), while a thread reads the serial console
for the kernel and userspace milestones. Then it asks the guest what it saw
(``systemd-analyze``, ``cloud-init analyze blame``), times ``docker run --rm``
inside it when it has Docker, optionally times a warm start from a managed
save, and removes the VM, whatever happens. Runs of several profiles are
interleaved so that a slow moment of the host does not land on one profile.
"""

from __future__ import annotations

import os
import platform
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._core.progress import Labelled, NoProgress, Progress
from ..engine import containers
from ..engine.install import CHECK_IMAGE
from ..errors import ConfigError, VmctlError
from ..hypervisor.accel import accelerator, qemu_version
from ..hypervisor.console import BootWatch
from ..images.catalog import Cache
from ..machines.lifecycle import Timeline, boot_for, fast_capable, up
from ..machines.machine import Machine
from ..machines.storage import Storage
from ..model.profiles import check_profile
from ..model.spec import MachineSpec, check_name, check_range
from . import data as labdata

if TYPE_CHECKING:
    from ..machines.host import Host


@dataclass(frozen=True)
class LabConfig:
    """What one ``vmctl lab boot`` measures."""

    runs: int = 3
    image: str = "debian-12"
    profiles: tuple[str, ...] = ()  # none: the image's default (fast where it can boot it, as up does)
    docker: bool = False
    containers: int = 5  # docker run --rm, per VM and on the host
    warm: bool = False  # also time a start from a managed save
    cpus: int = 2
    memory_mib: int = 1024

    def __post_init__(self) -> None:
        check_range(self.runs, 1, 100, "runs")
        check_range(self.containers, 0, 100, "container runs")
        check_name(self.image, "image name")
        for p in self.profiles:
            check_profile(p)
        if len(set(self.profiles)) != len(self.profiles):
            raise ConfigError(f"a profile is given twice: {', '.join(self.profiles)}")
        MachineSpec("lab", image=self.image, cpus=self.cpus, memory_mib=self.memory_mib)  # same checks as up


class _ConsoleWatch:
    """Polls a serial log every 0.1 s in a thread, on the timeline's clock."""

    def __init__(self, path: Path, timeline: Timeline) -> None:
        self.watch = BootWatch(path, started=timeline.started)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _ConsoleWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.watch.poll()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.watch.poll()


def run_lab(host: Host, config: LabConfig, progress: Progress = NoProgress(), command: str = "") -> dict[str, Any]:
    """Run the lab and return its result (see ``docs/lab.md`` for the fields).

    ``command`` is recorded as the command line that reproduces the result.
    """
    image = Cache().require(config.image)
    if not config.profiles:
        config = replace(config, profiles=("fast" if fast_capable(image) else "stock",))
    for profile in config.profiles:  # an image a profile cannot boot fails here, not after the other boots
        boot_for(image, MachineSpec("lab-check", image=config.image, profile=profile))
    accel = accelerator(progress)
    Storage(host.hv, progress).image(image)  # uploaded now, if the host lacks it: not a boot's time
    tag = secrets.token_hex(4)
    runs: list[dict[str, Any]] = []
    guest: dict[str, str] = {}
    for i in range(1, config.runs + 1):
        for profile in config.profiles:
            label = f"{profile} {i}/{config.runs}"
            try:
                run, seen = _one_run(host, config, profile, f"lab-{tag}-{profile}-{i}", Labelled(progress, label))
            except VmctlError as e:  # one failed boot is a result too; the other runs still count
                run, seen = {"profile": profile, "phases": {}, "error": str(e), "hint": e.hint}, {}
            runs.append({"run": i, **run})
            guest = seen or guest
    summ = labdata.summary(runs)
    vm_times = [t for r in runs for t in r.get("containers", [])]
    result: dict[str, Any] = {
        "accel": accel,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "config": asdict(config),
        "host": _host_facts(host),
        "guest": guest,
        "phases": [*labdata.PHASES, labdata.BOOT_TO_SSH],
        "runs": runs,
        "summary": summ,
        "comparison": labdata.comparison(summ),
        "containers": {"vm": _container_result(vm_times, "no Docker in the VM: use --docker or a baked image"),
                       "host": _host_containers(config.containers, progress)},
    }
    if config.warm:
        warm = [r["warm"]["ssh_login"] for r in runs if "warm" in r]
        result["warm"] = {"runs": warm, "summary": labdata.stats(warm) if warm else None}
    return result


def _one_run(host: Host, config: LabConfig, profile: str, name: str,
             progress: Progress) -> tuple[dict[str, Any], dict[str, str]]:
    spec = MachineSpec(name, image=config.image, cpus=config.cpus, memory_mib=config.memory_mib,
                       profile=profile, docker=config.docker)
    timeline = Timeline()
    try:
        with _ConsoleWatch(host.file(name, "serial.log"), timeline) as console:
            # as `vmctl up` does it: a Docker host's socket forwarder too, before "ready"
            machine = up(host, spec, progress=progress, timeline=timeline, forward=spec.docker)
            timeline.mark("ready")
        try:
            run: dict[str, Any] = {"profile": profile,
                                   "phases": labdata.phases_of(timeline.marks, console.watch.seen)}
            progress.phase("asking the guest (systemd-analyze, cloud-init analyze)")
            run["guest"] = _guest_analysis(machine)
            guest = _guest_versions(machine)
            if config.containers and guest.get("docker"):
                progress.phase(f"timing docker run --rm x{config.containers} in the VM")
                run["containers"] = _vm_containers(machine, config.containers)
            if config.warm:
                progress.phase("saving the VM's state, then a warm start")
                run["warm"] = _warm_start(host, machine)
            return run, guest
        finally:
            machine.close()
    finally:
        progress.phase("removing the VM")
        host.delete(name)


def _guest_analysis(machine: Machine) -> dict[str, Any]:
    # systemd-analyze fails until the boot has finished (cloud-final may still run)
    wait = "for i in $(seq 120); do systemd-analyze >/dev/null 2>&1 && break; sleep 0.5; done; "
    analyze = machine.run(wait + "systemd-analyze; systemd-analyze blame --no-pager", timeout=180).stdout
    blame = machine.run(["sudo", "cloud-init", "analyze", "blame"], timeout=120).stdout
    return {"systemd": labdata.systemd_time(analyze), "systemd_blame": labdata.systemd_blame(analyze),
            "cloud_init_blame": labdata.cloud_init_blame(blame)}


def _guest_versions(machine: Machine) -> dict[str, str]:
    script = ("uname -r; . /etc/os-release; echo \"$PRETTY_NAME\"; systemctl --version | head -1; "
              "dpkg-query -W -f '${Version}\\n' cloud-init; "
              "dpkg-query -W -f '${Version}\\n' docker.io 2>/dev/null || echo")
    lines = machine.run(script, timeout=60).stdout.splitlines() + [""] * 5
    return {"image": machine.spec.image, "kernel": lines[0], "os": lines[1], "systemd": lines[2],
            "cloud_init": lines[3], "docker": lines[4]}


def _vm_containers(machine: Machine, n: int) -> list[float]:
    """Seconds per ``docker run --rm``, timed inside the guest (SSH is not in the number)."""
    image = CHECK_IMAGE
    loop = (f"for i in $(seq {n}); do s=$(date +%s%N); docker run --rm --network none {image} true >/dev/null "
            "|| exit 1; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done")
    result = machine.run(["sudo", "sh", "-c", loop], timeout=60 + 60 * n)
    if result.rc != 0:
        raise VmctlError(f"{machine.name}: docker run --rm {image} failed: {result.tail()}",
                         hint=f"'vmctl ssh {machine.name} -- sudo docker info' shows the engine's state")
    return [round(int(us) / 1e6, 3) for us in result.stdout.split()]


def _warm_start(host: Host, machine: Machine) -> dict[str, float]:
    """Managed-save the running VM, then time its restore up to an SSH login."""
    machine.close()
    host.hv.managed_save(machine.name)
    started = time.monotonic()
    host.hv.start(machine.name)
    restored = time.monotonic() - started
    machine.wait_ssh(120)
    return {"restored": round(restored, 3), "ssh_login": round(time.monotonic() - started, 3)}


def _container_result(times: list[float], reason: str) -> dict[str, Any]:
    if not times:
        return {"runs": [], "summary": None, "reason": reason}
    return {"runs": times, "summary": labdata.stats(times)}


def _host_containers(n: int, progress: Progress) -> dict[str, Any]:
    if not n:
        return _container_result([], "not asked for (--containers 0)")
    engine, reason = containers.host_engine()
    if engine is None:
        return _container_result([], reason)
    progress.phase(f"timing docker run --rm x{n} on the host")
    return {**_container_result(containers.time_on_host(n), ""), "engine": engine}


def _host_facts(host: Host) -> dict[str, Any]:
    info = host.hv.info()
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())
    return {"kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(), "qemu": qemu_version(),
            "libvirt": info.libvirt_version, "python": platform.python_version(), "vmctl": version("vmctl")}
