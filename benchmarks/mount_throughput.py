#!/usr/bin/env python3
"""Sequential throughput through a shared folder (``vmctl up --mount``) vs the guest's own disk.

In the guest, as root: ``dd`` writes SIZE MiB from /dev/zero with ``conv=fsync``
(so the time includes getting the data to the host), the guest's page cache is
dropped, and ``dd`` reads the file back. The same is done in a directory on the
guest's root disk. Each is repeated RUNS times; the table gives the median MB/s
(10^6 bytes, as dd prints) and the share's speed as a fraction of the disk's.
The host's page cache is left alone (it is shared with other work on the
machine), so both reads may come from the host's memory: the figures compare
the two paths into the guest, not the host's disks.

    python benchmarks/mount_throughput.py web                  # an existing VM, its first rw share
    python benchmarks/mount_throughput.py web --share /srv/app --size 64 --runs 5
    python benchmarks/mount_throughput.py --create --json out.json   # a VM of its own, deleted after

For context: Multipass's sshfs mounts were measured at ~30 MB/s by its users.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import vmctl

DISK_DIR = "/var/tmp"  # on the guest's root disk (Debian keeps /var/tmp there)
BENCH_VM = "bench-mounts"
DD_RE = re.compile(r"^(\d+) bytes .* copied, ([\d.e+-]+) s", re.M)


@dataclass(frozen=True)
class Figures:
    where: str  # "share" or "disk"
    path: str
    write_mb_s: float
    read_mb_s: float
    writes: list[float]
    reads: list[float]


def _dd(machine: vmctl.Machine, command: str) -> float:
    """Run one dd as root in the guest; its MB/s from the bytes and seconds it reports."""
    result = machine.run(f"sudo sh -c {shlex.quote(command)}", timeout=1800)
    found = DD_RE.search(result.stderr)
    if result.rc != 0 or found is None:
        raise SystemExit(f"dd failed in {machine.name} (exit {result.rc}): {result.stderr.strip()[-300:]}")
    return int(found[1]) / float(found[2]) / 1e6


def measure(machine: vmctl.Machine, directory: str, where: str, size_mib: int, runs: int) -> Figures:
    """Median write (conv=fsync) and cold-cache read of a SIZE MiB file in ``directory``."""
    path = f"{directory.rstrip('/')}/vmctl-bench-{int(time.time())}"
    target = shlex.quote(path)
    writes, reads = [], []
    try:
        for _ in range(runs):
            writes.append(_dd(machine, f"dd if=/dev/zero of={target} bs=1M count={size_mib} conv=fsync"))
            machine.run("sudo sh -c 'sync; echo 3 > /proc/sys/vm/drop_caches'")
            reads.append(_dd(machine, f"dd if={target} of=/dev/null bs=1M"))
    finally:
        machine.run(f"sudo rm -f {target}")
    return Figures(where, directory, round(statistics.median(writes), 1), round(statistics.median(reads), 1),
                   [round(w, 1) for w in writes], [round(r, 1) for r in reads])


def first_share(machine: vmctl.Machine) -> str:
    """The guest directory of the VM's first read-write shared folder."""
    for mount in machine.spec.shared_folders:
        if not mount.readonly:
            return str(mount.guest)
    raise SystemExit(f"{machine.name} has no read-write shared folder: give one with --share, "
                     f"or use --create")


def report(machine: str, size_mib: int, share: Figures, disk: Figures) -> dict[str, Any]:
    ratio = {"write": round(share.write_mb_s / disk.write_mb_s, 2), "read": round(share.read_mb_s / disk.read_mb_s, 2)}
    print(f"{machine}: {size_mib} MiB sequential, median MB/s")
    print(f"{'':<8} {'write':>8} {'read':>8}  path")
    for f in (share, disk):
        print(f"{f.where:<8} {f.write_mb_s:>8.1f} {f.read_mb_s:>8.1f}  {f.path}")
    print(f"{'ratio':<8} {ratio['write']:>8.2f} {ratio['read']:>8.2f}  share / disk")
    return {"machine": machine, "size_mib": size_mib, "share": asdict(share), "disk": asdict(disk), "ratio": ratio}


def _created(stack: ExitStack, host: vmctl.Host, image: str, profile: str) -> vmctl.Machine:
    """A VM of the benchmark's own with a fresh share; deleted (and the share removed) on exit."""
    share = stack.enter_context(tempfile.TemporaryDirectory(prefix="vmctl-bench-"))
    print(f"creating {BENCH_VM} (image {image}, profile {profile}) with {share} shared at /mnt/bench ...",
          file=sys.stderr)
    spec = vmctl.MachineSpec(BENCH_VM, image=image, profile=profile, mounts=(f"{share}:/mnt/bench",))
    stack.callback(host.delete, BENCH_VM)
    return host.up(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="an existing VM with a shared folder")
    parser.add_argument("--create", action="store_true", help=f"make VM {BENCH_VM} for the run and delete it after")
    parser.add_argument("--image", default="debian-12", help="image for --create")
    parser.add_argument("--profile", default="fast", help="boot profile for --create")
    parser.add_argument("--share", help="guest directory of the share (default: the VM's first rw one)")
    parser.add_argument("--size", type=int, default=256, help="MiB per file (default 256)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions, median reported (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if bool(args.name) == args.create:
        parser.error("give a VM name or --create (not both)")
    with ExitStack() as stack:
        host = stack.enter_context(vmctl.connect())
        machine = _created(stack, host, args.image, args.profile) if args.create else host.get(args.name)
        stack.callback(machine.close)
        share_dir = args.share or first_share(machine)
        share = measure(machine, share_dir, "share", args.size, args.runs)
        disk = measure(machine, DISK_DIR, "disk", args.size, args.runs)
        data = report(machine.name, args.size, share, disk)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
