"""The boot lab's numbers: parsing what guests report, and summarising runs. Pure.

A run is a dict ``{"profile", "run", "phases": {phase: seconds}, ...}``
where each phase is the time, from the start of ``up``, at which it ended.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from typing import Any

# The milestones of a VM's boot, in the order they happen.
PHASES = (
    "define",        # overlay, seed and domain defined
    "qemu_started",  # libvirt started QEMU
    "kernel",        # "Linux version" on the serial console
    "userspace",     # init (systemd) running, from the serial console
    "address",       # the guest's DHCP lease seen by libvirt
    "ssh_banner",    # sshd answers on port 22
    "ssh_login",     # vmctl logged in with its key, the host key pinned
    "cloud_init",    # the guest set up: cloud-init done (stock), vmctl-ready.target reached (fast)
    "docker_ready",  # Docker Engine answering (with --docker)
    "ready",         # up returned: what the user waits for
)
# Derived: from the moment QEMU is asked to start until vmctl can log in.
BOOT_TO_SSH = "boot_to_ssh"

# ``lifecycle.Timeline`` marks -> lab phases
FROM_UP = {"define": "define", "start": "qemu_started", "ip": "address", "ssh_banner": "ssh_banner",
           "ssh": "ssh_login", "cloud_init": "cloud_init", "docker": "docker_ready", "ready": "ready"}


def phases_of(marks: dict[str, float], serial: dict[str, float]) -> dict[str, float]:
    """One run's phases from ``up``'s timeline marks and the serial console's milestones."""
    found = {FROM_UP[k]: v for k, v in marks.items() if k in FROM_UP}
    found.update({k: v for k, v in serial.items() if k in ("kernel", "userspace")})
    phases = {p: found[p] for p in PHASES if p in found}
    if "ssh_login" in phases and "define" in phases:
        phases[BOOT_TO_SSH] = round(phases["ssh_login"] - phases["define"], 3)
    return phases


def stats(values: Iterable[float]) -> dict[str, float | int]:
    """Median, p95 (nearest rank), min, max and count of ``values``."""
    data = sorted(values)
    if not data:
        raise ValueError("no values to summarise")
    rank = max(1, math.ceil(0.95 * len(data)))
    return {"median": round(statistics.median(data), 3), "p95": round(data[rank - 1], 3),
            "min": round(data[0], 3), "max": round(data[-1], 3), "n": len(data)}


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Per profile, per phase: :func:`stats` over the runs that reached it."""
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for profile in dict.fromkeys(r["profile"] for r in runs):
        mine = [r["phases"] for r in runs if r["profile"] == profile and not r.get("error")]
        names = [p for p in (*PHASES, BOOT_TO_SSH) if any(p in m for m in mine)]
        out[profile] = {p: stats(m[p] for m in mine if p in m) for p in names}
    return out


def comparison(summ: dict[str, dict[str, dict[str, float | int]]]) -> dict[str, float]:
    """Each profile's median over the stock profile's: boot to SSH (``P_over_stock``)
    and ready, when ``up`` returned (``P_over_stock_ready``)."""
    out = {}
    stock = summ.get("stock", {})
    for name, s in summ.items():
        for phase, suffix in ((BOOT_TO_SSH, ""), ("ready", "_ready")):
            if name != "stock" and phase in s and phase in stock:
                out[f"{name}_over_stock{suffix}"] = round(float(s[phase]["median"]) / float(stock[phase]["median"]), 3)
    return out


def smaps_rollup(text: str) -> dict[str, float]:
    """RSS and PSS, in MiB, from a process's ``/proc/PID/smaps_rollup``."""
    found = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()
             if line.startswith(("Rss:", "Pss:"))}
    return {"rss_mib": round(found.get("Rss", 0) / 1024, 1), "pss_mib": round(found.get("Pss", 0) / 1024, 1)}


def pool_comparison(sizes: list[dict[str, Any]]) -> dict[str, float]:
    """Each pool's ready time (its last VM's) over one VM's: ``N_over_1``."""
    one = next((s["total"] for s in sizes if s["n"] == 1 and s.get("total")), None)
    if not one:
        return {}
    return {f"{s['n']}_over_1": round(float(s["total"]) / float(one), 3)
            for s in sizes if s["n"] != 1 and s.get("total")}


def pool_table(result: dict[str, Any]) -> list[str]:
    """The pool lab's result as text lines."""
    config = result["config"]
    lines = [f"accelerator: {result['accel']}   image: {config['image']}   profile: {config['profile']}   "
             f"{config['cpus']} vCPU, {config['memory_mib']} MiB per VM", "",
             f"{'VMs at once':<12}{'ready (each, s)':<34}{'all ready':>10}{'RSS MiB':>10}{'PSS MiB':>10}"]
    for size in result["sizes"]:
        memory = size.get("memory") or []
        rss = statistics.median(m["rss_mib"] for m in memory) if memory else None
        pss = statistics.median(m["pss_mib"] for m in memory) if memory else None
        each = " ".join(f"{t:.1f}" for t in size["ready"])
        total = f"{size['total']:.1f}" if size.get("total") else "-"
        lines.append(f"{size['n']:<12}{each:<34}{total:>10}" + "".join(
            f"{v:>10.0f}" if v is not None else f"{'-':>10}" for v in (rss, pss)))
        lines.extend(f"  {vm} failed: {error}" for vm, error in size.get("errors", {}).items())
    for ratio, value in result.get("comparison", {}).items():
        lines.append(f"{ratio.replace('_', ' ')} VM: {value:.2f} (time until all are ready)")
    lines.append(f"(memory: median over the VMs, read after {config['idle']:.0f} s idle; "
                 f"each VM was given {config['memory_mib']} MiB)")
    return lines


# What guests print --------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+)h)?\s*(?:(\d+)min)?\s*(?:([\d.]+)s)?\s*(?:([\d.]+)ms)?\s*(?:([\d.]+)us)?")


def seconds(text: str) -> float:
    """systemd's ``1min 2.353s``, ``845ms``, ``512us``, ``1h 2min`` as seconds."""
    m = _DURATION.fullmatch(text.strip())
    if not m or not any(m.groups()):
        raise ValueError(f"not a systemd duration: {text!r}")
    h, mins, s, ms, us = (float(g) if g else 0.0 for g in m.groups())
    return round(h * 3600 + mins * 60 + s + ms / 1000 + us / 1e6, 6)


def systemd_time(text: str) -> dict[str, float]:
    """``Startup finished in 9.2s (kernel) + 1min 2.3s (userspace) = ...`` as {kernel, userspace, total}."""
    line = next((ln for ln in text.splitlines() if ln.startswith("Startup finished in ")), "")
    terms = line.removeprefix("Startup finished in ").split("=")[0].split("+")
    parts = {m.group(2): seconds(m.group(1)) for t in terms if (m := re.fullmatch(r"\s*(.+?)\s*\((\w+)\)\s*", t))}
    if parts:
        parts["total"] = round(sum(parts.values()), 3)
    return parts


def systemd_blame(text: str, top: int = 10) -> list[dict[str, Any]]:
    """``systemd-analyze blame`` lines as [{unit, seconds}], slowest first."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s*(.+?)\s+(\S+\.\S+)$", line)
        if m:
            try:
                out.append({"unit": m.group(2), "seconds": seconds(m.group(1))})
            except ValueError:
                continue
    return out[:top]


def cloud_init_blame(text: str, top: int = 10) -> list[dict[str, Any]]:
    """``cloud-init analyze blame`` lines (``  04.23600s (init-network/config-growpart)``)."""
    out = [{"event": m.group(2), "seconds": round(float(m.group(1)), 3)}
           for m in re.finditer(r"^\s*([\d.]+)s \((.+)\)\s*$", text, re.M)]
    return out[:top]


# Presentation -------------------------------------------------------------------

LABELS = {
    "define": "define", "qemu_started": "QEMU started", "kernel": "kernel started", "userspace": "userspace",
    "address": "address", "ssh_banner": "SSH banner", "ssh_login": "SSH login", "cloud_init": "guest set up",
    "docker_ready": "Docker ready", "ready": "ready (up returned)", BOOT_TO_SSH: "boot to SSH",
}


def table(result: dict[str, Any]) -> list[str]:
    """The lab's result as text lines: seconds since ``up`` began, per profile, then containers."""
    lines = [f"accelerator: {result['accel']}   runs: {result['config']['runs']} per profile   "
             f"image: {result['config']['image']}", ""]
    lines.append(f"{'phase (s since up began)':<26}" + "".join(
        f"{p + ' median':>14}{'p95':>8}{'min':>8}{'max':>8}" for p in result["summary"]))
    for phase in (*PHASES, BOOT_TO_SSH):
        cells = [result["summary"][p].get(phase) for p in result["summary"]]
        if any(cells):
            lines.append(f"{LABELS[phase]:<26}" + "".join(
                f"{c['median']:>14.2f}{c['p95']:>8.2f}{c['min']:>8.2f}{c['max']:>8.2f}" if c else f"{'-':>38}"
                for c in cells))
    for run in result.get("runs", []):
        if run.get("error"):
            lines.append(f"{run['profile']} run {run['run']} failed: {run['error']}")
            lines.extend(f"  {line}" for line in (run.get("hint") or "").splitlines())
    for ratio, value in result.get("comparison", {}).items():
        what = "ready" if ratio.endswith("_ready") else "boot to SSH"
        lines.append(f"{ratio.removesuffix('_ready').replace('_', ' ')}: {value:.2f} (median {what})")
    lines.append("")
    for where, data in result["containers"].items():
        if data.get("summary"):
            s = data["summary"]
            lines.append(f"container start ({where}, docker run --rm, n={s['n']}): median {s['median']:.2f}s  "
                         f"p95 {s['p95']:.2f}s  min {s['min']:.2f}s  max {s['max']:.2f}s")
        else:
            lines.append(f"container start ({where}): not measured: {data.get('reason', '')}")
    if warm := result.get("warm", {}).get("summary"):
        lines.append(f"warm start (managed save, restore to SSH login, n={warm['n']}): median {warm['median']:.2f}s")
    return lines
