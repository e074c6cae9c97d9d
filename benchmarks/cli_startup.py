#!/usr/bin/env python3
"""How long the vmctl command takes to start, and whether it loads what it should not.

``vmctl --help``, ``vmctl ls --help`` and shell completion run on every <TAB>,
and the ProxyCommand helper once per ssh connection (docker over ssh:// opens
many): their cost is almost all imports. Each case runs N times in a fresh
process; the table gives the median and the fastest wall time, and which heavy
libraries the process imported (read from ``PYTHONPROFILEIMPORTTIME``, so the
command is measured as it is, not through a wrapper).

    python benchmarks/cli_startup.py                 # the vmctl beside this Python
    python benchmarks/cli_startup.py --runs 20 --json
    python benchmarks/cli_startup.py /usr/local/bin/vmctl
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Libraries that none of the fast paths needs: the first three are the slow ones.
WATCHED = ("paramiko", "libvirt", "docker", "yaml", "jinja2")
FORBIDDEN = ("paramiko", "libvirt", "docker")
NO_SUCH_NETNS = "vmctl-benchmark-no-such-netns"


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    exit_code: int = 0  # what a correct run exits with
    target: float | None = None  # seconds the median should stay under


@dataclass(frozen=True)
class Result:
    name: str
    median: float
    min: float
    runs: int
    target: float | None
    heavy: list[str]  # WATCHED libraries the command imported
    exit_code: int
    expected_exit_code: int

    @property
    def ok(self) -> bool:
        """Under target (when there is one), no forbidden import, the expected exit code."""
        fast = self.target is None or self.median <= self.target
        clean = not set(self.heavy) & set(FORBIDDEN)
        return fast and clean and self.exit_code == self.expected_exit_code


def _complete(words: str) -> dict[str, str]:
    """The environment bash's completion function gives vmctl for the line ``words``."""
    return {"_VMCTL_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}


def cases(vmctl: str, python: str) -> list[Case]:
    return [
        Case("python (nothing imported)", [python, "-c", "pass"]),
        Case("vmctl --help", [vmctl, "--help"], target=0.15),
        Case("vmctl ls --help", [vmctl, "ls", "--help"], target=0.15),
        Case("complete 'vmctl '", [vmctl], _complete("vmctl "), target=0.15),
        Case("complete 'vmctl image build '", [vmctl], _complete("vmctl image build "), target=0.15),
        # an absent namespace: the helper imports, parses, fails to open it and exits 1
        Case("python -m vmctl._core.proxy", [python, "-m", "vmctl._core.proxy", NO_SUCH_NETNS, "127.0.0.1", "22"],
             exit_code=1, target=0.1),
    ]


def _run(case: Case, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **case.env, **(extra_env or {})}
    return subprocess.run(case.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)


def imported(case: Case) -> list[str]:
    """The WATCHED libraries one run imported, from Python's own import-time log."""
    log = _run(case, {"PYTHONPROFILEIMPORTTIME": "1"}).stderr
    names = {line.rsplit("|", 1)[1].strip() for line in log.splitlines() if line.startswith("import time:")}
    return [lib for lib in WATCHED if any(n == lib or n.startswith(lib + ".") for n in names)]


def measure(case: Case, runs: int) -> Result:
    times, code = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        code = _run(case).returncode
        times.append(time.perf_counter() - started)
    return Result(case.name, statistics.median(times), min(times), runs, case.target, imported(case),
                  code, case.exit_code)


def table(results: list[Result]) -> list[str]:
    width = max(len(r.name) for r in results)
    lines = [f"{'case':<{width}}  {'median':>8}  {'min':>8}  {'target':>7}  {'heavy imports':<20}  verdict"]
    for r in results:
        target = f"{r.target:.2f} s" if r.target else "-"
        verdict = "ok" if r.ok else "SLOW/HEAVY" if r.exit_code == r.expected_exit_code else f"exit {r.exit_code}"
        lines.append(f"{r.name:<{width}}  {r.median:6.3f} s  {r.min:6.3f} s  {target:>7}  "
                     f"{', '.join(r.heavy) or '-':<20}  {verdict}")
    return lines


def default_vmctl() -> str | None:
    """The vmctl installed with the Python running this, else the first on PATH."""
    beside = Path(sys.executable).with_name("vmctl")
    return str(beside) if beside.is_file() else shutil.which("vmctl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("vmctl", nargs="?", default=default_vmctl(), help="the vmctl executable (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the proxy helper")
    parser.add_argument("--runs", "-n", type=int, default=10, help="runs per case (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if not args.vmctl:
        parser.error("no vmctl found beside this Python or on PATH; give its path")
    results = [measure(case, args.runs) for case in cases(args.vmctl, args.python)]
    if args.json:
        print(json.dumps({"vmctl": args.vmctl, "python": args.python, "load": os.getloadavg(),
                          "results": [{**asdict(r), "ok": r.ok} for r in results]}, indent=2))
    else:
        print(f"{args.vmctl}, {args.runs} runs each, load average {os.getloadavg()[0]:.2f}")
        print("\n".join(table(results)))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
