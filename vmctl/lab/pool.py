"""``vmctl lab pool``: how a pool's ready time and memory grow with its size.

For each size N it starts N ``up``s at once (as ``pool up`` and ``vmctl up a b c``
do), records when each returned, ready, and when the last did (the pool's ready
time), lets the VMs idle, then reads what each QEMU process holds in host memory
(RSS, and PSS, which shares the pages several processes map) against the memory
the VM was given. Every VM it makes is removed again, whatever happens.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._core.progress import Labelled, NoProgress, Progress
from ..errors import ConfigError, VmctlError
from ..hypervisor.accel import accelerator
from ..images.catalog import Cache
from ..machines.host import Host
from ..machines.lifecycle import Timeline, fast_capable, up
from ..machines.storage import Storage
from ..model.profiles import check_profile
from ..model.spec import MachineSpec, check_name, check_range
from . import data as labdata


@dataclass(frozen=True)
class PoolLabConfig:
    """What one ``vmctl lab pool`` measures."""

    sizes: tuple[int, ...] = (1, 2, 3, 4)
    image: str = "debian-12"
    profile: str = ""  # none: the image's default, as up picks it
    idle: float = 60  # seconds the VMs idle before their memory is read
    cpus: int = 1
    memory_mib: int = 1024

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ConfigError("no pool size to measure", hint="use --sizes 1,2,3,4")
        for n in self.sizes:
            check_range(n, 1, 16, "pool size")
        check_range(int(self.idle), 0, 3600, "idle seconds")
        check_name(self.image, "image name")
        if self.profile:
            check_profile(self.profile)
        MachineSpec("lab", image=self.image, cpus=self.cpus, memory_mib=self.memory_mib)  # same checks as up


def qemu_pids(name: str) -> list[int]:
    """The QEMU processes running VM ``name`` on this host (libvirt names it ``guest=NAME``)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"guest={name},".encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS of process ``pid`` in MiB (``/proc/PID/smaps_rollup``)."""
    return labdata.smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())


def run_pool_lab(host: Host, config: PoolLabConfig, progress: Progress = NoProgress(),
                 command: str = "") -> dict[str, Any]:
    """Run the pool lab and return its result (see ``docs/lab.md``)."""
    image = Cache().require(config.image)
    profile = config.profile or ("fast" if fast_capable(image) else "stock")
    accel = accelerator(progress)
    Storage(host.hv, progress).image(image)  # uploaded now, if the host lacks it: not a boot's time
    tag = secrets.token_hex(3)
    sizes = [_one_size(host, config, profile, n, f"lab-{tag}-p{n}", progress) for n in config.sizes]
    return {"accel": accel, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": command,
            "config": {**asdict(config), "profile": profile}, "sizes": sizes,
            "comparison": labdata.pool_comparison(sizes)}


def _one_size(host: Host, config: PoolLabConfig, profile: str, n: int, prefix: str,
              progress: Progress) -> dict[str, Any]:
    names = [f"{prefix}-{i}" for i in range(1, n + 1)]
    lock, started = threading.Lock(), time.monotonic()
    ready: dict[str, float] = {}
    errors: dict[str, str] = {}

    def one(name: str) -> None:
        spec = MachineSpec(name, image=config.image, cpus=config.cpus, memory_mib=config.memory_mib, profile=profile)
        try:
            with Host(host.uri) as mine:  # one libvirt connection per thread
                up(mine, spec, progress=Labelled(progress, f"pool of {n}: {name}"), timeline=Timeline(),
                   forward=False).close()
            with lock:
                ready[name] = round(time.monotonic() - started, 3)
        except VmctlError as e:
            with lock:
                errors[name] = str(e)

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(one, names))
        result: dict[str, Any] = {"n": n, "ready": [ready[m] for m in names if m in ready],
                                  "total": max(ready.values()) if len(ready) == n else None, "errors": errors}
        if not errors:
            progress.phase(f"pool of {n}: idling {config.idle:.0f} s, then reading QEMU's memory")
            time.sleep(config.idle)
            pids = {name: qemu_pids(name) for name in names}
            result["memory"] = [{"vm": name, "configured_mib": config.memory_mib, **memory_of(found[0])}
                                for name, found in pids.items() if found]
        return result
    finally:
        progress.phase(f"pool of {n}: removing its VMs")
        for name in names:
            try:
                host.delete(name)
            except VmctlError as e:  # one stuck VM must not keep the others
                errors.setdefault(name, f"not removed: {e}")
