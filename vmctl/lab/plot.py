"""The boot lab's chart: a PNG made with matplotlib (``pip install 'vmctl[lab]'``)."""

from __future__ import annotations

import io
from typing import Any

from ..errors import ConfigError
from .data import BOOT_TO_SSH, LABELS, PHASES

COLOURS = ("#9e9e9e", "#607d8b", "#8d6e63", "#ffb300", "#43a047", "#1e88e5", "#3949ab", "#8e24aa", "#e53935",
           "#00897b")


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ConfigError("--plot needs matplotlib, which is not installed",
                          hint="pip install 'vmctl[lab]' (or pip install matplotlib)") from e


def check_result(result: Any, source: str) -> dict[str, Any]:
    """``result`` if it looks like ``vmctl lab boot``'s JSON, else a ConfigError naming ``source``."""
    missing = [
        k for k in ("accel", "config", "summary", "containers") if not isinstance(result, dict) or k not in result
    ]
    if missing:
        raise ConfigError(
            f"{source} is not a result of 'vmctl lab boot' (no {', '.join(missing)})",
            hint="pass the file written by 'vmctl lab boot --json FILE'",
        )
    return dict(result)


def _rows(results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, phase summary) per profile of every result; one accelerator only."""
    accels = {r["accel"] for r in results}
    if len(accels) > 1:
        raise ConfigError(
            f"these results mix accelerators ({', '.join(sorted(accels))})",
            hint="chart KVM and TCG results separately: their numbers do not compare",
        )
    rows = []
    for i, result in enumerate(results):
        for profile, phases in result["summary"].items():
            rows.append((profile if len(results) == 1 else f"{profile} (#{i + 1})", phases))
    return rows


def _extras(results: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, stats) for warm starts and container starts, where measured."""
    out = []
    for result in results:
        if warm := (result.get("warm") or {}).get("summary"):
            out.append(("warm start (restore to SSH)", warm))
        for where, data in result["containers"].items():
            if data.get("summary"):
                out.append((f"docker run --rm ({'in the VM' if where == 'vm' else 'on the host'})", data["summary"]))
    return out


def plot(results: list[dict[str, Any]]) -> bytes:
    """The results as a PNG: a boot waterfall per profile, and everything on a log scale."""
    require_matplotlib()
    # A Figure with its own Agg canvas: no pyplot, so no process-wide backend or figure registry
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, extras = _rows(results), _extras(results)
    fig = Figure(figsize=(12, 3 + 0.55 * (len(rows) + len(rows) + len(extras))))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(
        2, 1, gridspec_kw={"height_ratios": [max(1, len(rows)), max(1, len(rows) + len(extras))]}
    )
    fig.suptitle(
        f"VM boot versus container start ({results[0]['accel'].upper()}, "
        f"median of {results[0]['config']['runs']} run(s) per profile)"
    )
    _waterfall(top, rows)
    _log_bars(bottom, rows, extras)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _waterfall(ax: Any, rows: list[tuple[str, dict[str, Any]]]) -> None:
    seen: set[str] = set()
    for y, (_label, phases) in enumerate(rows):
        start = 0.0
        for colour, phase in zip(COLOURS, PHASES, strict=True):
            if phase not in phases:
                continue
            end = float(phases[phase]["median"])
            ax.barh(
                y,
                max(end - start, 0.0),
                left=start,
                color=colour,
                edgecolor="white",
                label=None if phase in seen else LABELS[phase],
            )
            seen.add(phase)
            start = max(start, end)
        if BOOT_TO_SSH in phases:
            ax.text(
                start + 0.5,
                y,
                f"SSH login at {phases['ssh_login']['median']:.1f}s, done at {start:.1f}s",
                va="center",
                fontsize=9,
            )
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.invert_yaxis()
    ax.set_title("Where a boot's time goes (median per phase)", fontsize=10, loc="left")
    ax.set_xlabel("seconds since 'up' began; each segment ends when the phase named in the legend was reached")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_xlim(0, ax.get_xlim()[1] * 1.3)


def _log_bars(ax: Any, rows: list[tuple[str, dict[str, Any]]], extras: list[tuple[str, dict[str, Any]]]) -> None:
    from matplotlib.ticker import FuncFormatter

    bars = [(f"{label}: boot to SSH", p[BOOT_TO_SSH]) for label, p in rows if BOOT_TO_SSH in p] + extras
    for y, (label, s) in enumerate(bars):
        median = float(s["median"])
        ax.barh(y, median, color="#1e88e5" if "boot" in label else "#43a047")
        ax.errorbar(
            median, y, xerr=[[median - float(s["min"])], [float(s["max"]) - median]], color="black", capsize=3, lw=1
        )
        ax.text(float(s["max"]) * 1.15, y, f"{median:.2f}s", va="center", fontsize=9)
    ax.set_yticks(range(len(bars)), [label for label, _ in bars])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(
        min(0.1, min(float(s["min"]) for _, s in bars) / 2) if bars else 0.1,
        max(100.0, max(float(s["max"]) for _, s in bars) * 3) if bars else 100.0,
    )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}s"))
    ax.set_title("VM to a shell versus a container", fontsize=10, loc="left")
    ax.set_xlabel("seconds, log scale (bar: median; whiskers: min to max)")
