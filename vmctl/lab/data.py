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
    "cloud_init",    # cloud-init status: done
    "docker",        # Docker Engine ready (with --docker)
)
# Derived: from the moment QEMU is asked to start until vmctl can log in.
BOOT_TO_SSH = "boot_to_ssh"

# ``lifecycle.Timeline`` marks -> lab phases
FROM_UP = {"define": "define", "start": "qemu_started", "ip": "address", "ssh_banner": "ssh_banner",
           "ssh": "ssh_login", "cloud_init": "cloud_init", "docker": "docker"}


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
    """Median boot-to-SSH of each profile over the stock profile's."""
    stock = summ.get("stock", {}).get(BOOT_TO_SSH)
    if not stock:
        return {}
    return {f"{p}_over_stock": round(float(s[BOOT_TO_SSH]["median"]) / float(stock["median"]), 3)
            for p, s in summ.items() if p != "stock" and BOOT_TO_SSH in s}


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
    "address": "address", "ssh_banner": "SSH banner", "ssh_login": "SSH login", "cloud_init": "cloud-init done",
    "docker": "Docker ready", BOOT_TO_SSH: "boot to SSH",
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
        lines.append(f"{ratio.replace('_', ' ')}: {value:.2f} (median boot to SSH)")
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
