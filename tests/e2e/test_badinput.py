"""Bad input to every command that takes a name, a path or a number: one line
saying what was wrong (plus a hint), exit code 1, and nothing made or removed.
(`up`'s own table is in test_failures.py.)"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmctl as vmctl_api

from .conftest import vmctl

# ``down ../../x`` once removed /tmp/x.qcow2 and /tmp/x.serial.log: these must survive every case.
SENTINEL = Path("/tmp/vmctl-e2e-sentinel")
TRAVERSAL = "../" * 12 + "tmp/vmctl-e2e-sentinel"
NOVM = "no VM named 'e2e-nosuch'"
BADVM = "invalid VM name"

CASES: list[tuple[list[str], str]] = [
    (["down", TRAVERSAL], BADVM),
    (["down", "e2e-nosuch\n"], BADVM),
    (["down", "e2e-nosuch"], NOVM),
    (["stop", TRAVERSAL], BADVM),
    (["stop", "e2e-nosuch"], NOVM),
    (["start", "e2e-nosuch"], NOVM),
    (["restart", "../x"], BADVM),
    (["suspend", "e2e-nosuch"], NOVM),
    (["suspend", TRAVERSAL], BADVM),
    (["resume", "e2e-nosuch"], NOVM),
    (["autostart", "e2e-nosuch", "on"], NOVM),
    (["set", "e2e-nosuch", "--disk", "20"], NOVM),
    (["clone", "e2e-nosuch", "e2e-new"], NOVM),
    (["clone", "e2e-nosuch", "../x"], BADVM),
    (["set", TRAVERSAL, "--cpus", "1"], BADVM),
    (["set", "e2e-nosuch", "--memory", "lots"], "'lots' is not a valid integer"),
    (["snapshot", "ls", "e2e-nosuch"], NOVM),
    (["snapshot", "create", "e2e-nosuch", "s"], NOVM),
    (["snapshot", "revert", TRAVERSAL, "s"], BADVM),
    (["autostart", "../x", "off"], BADVM),
    (["autostart", "e2e-nosuch", "maybe"], "'maybe' is not one of 'on', 'off'"),
    (["ssh", "e2e-nosuch", "--", "true"], NOVM),
    (["ssh", TRAVERSAL, "--", "true"], BADVM),
    (["cp", "/etc/hostname", "e2e-nosuch:/tmp/x"], NOVM),
    (["cp", "/etc/hostname", "/tmp/x"], "exactly one of SRC and DST must be NAME:PATH"),
    (["cp", "/nonexistent/file", "e2e-nosuch:/tmp/"], NOVM),
    (["console", TRAVERSAL], BADVM),
    (["console", "e2e-nosuch"], NOVM),
    (["inspect", "e2e-nosuch"], NOVM),
    (["inspect", "a/b"], BADVM),
    (["docker", "env", "e2e-nosuch"], NOVM),
    (["docker", "socket", TRAVERSAL], BADVM),
    (["docker", "context", "e2e-nosuch"], NOVM),
    (["docker", "install", "e2e-nosuch"], NOVM),
    (["docker", "load", "e2e-nosuch", "/nonexistent.tar"], "'/nonexistent.tar' does not exist"),
    (["port", "add", "e2e-nosuch", "8080:80"], NOVM),
    (["port", "add", "../x", "8080:80"], BADVM),
    (["port", "rm", "e2e-nosuch", "8080"], NOVM),
    (["pool", "up", "../x", "--size", "2"], "invalid pool name '../x'"),
    (["pool", "up", "e2e-p", "--size", "0"], "pool size 0 is out of range 1-32"),
    (["pool", "up", "e2e-p", "--size", "x"], "'x' is not a valid integer"),
    (["pool", "scale", "e2e-nosuch"], "Missing option '--size'"),
    (["pool", "scale", "e2e-nosuch", "--size", "2"], "no pool named 'e2e-nosuch'"),
    (["pool", "status", "e2e-nosuch"], "no pool named 'e2e-nosuch'"),
    (["pool", "down", TRAVERSAL], "invalid pool name"),
    (["image", "build", "../x"], "invalid image name '../x'"),
    (["image", "build", "e2e-nosuch"], "unknown image 'e2e-nosuch'"),
    (["image", "pull", "e2e-nosuch"], "unknown image 'e2e-nosuch'"),
    (["image", "rm", TRAVERSAL], "invalid image name"),
    (["image", "rm", "e2e-nosuch"], "unknown image 'e2e-nosuch'"),
    (["image", "test", "e2e-nosuch"], "unknown image 'e2e-nosuch'"),
    (["image", "bake", "../x", "--from", "e2e-nosuch"], "invalid image name '../x'"),
    (["image", "bake", "e2e-new", "--from", "e2e-nosuch"], NOVM),
    (["apply", "/nonexistent.yaml"], "cannot read plan /nonexistent.yaml"),
    (["apply", "{plans}/badname.yaml"], "invalid name '../x'"),
    (["apply", "{plans}/notmap.yaml"], "vms: expected a mapping of name -> settings"),
    (["apply", "{plans}/size0.yaml"], "pool size 0 is out of range 1-32"),
    (["destroy", "/nonexistent.yaml"], "cannot read plan /nonexistent.yaml"),
    (["lab", "boot", "--runs", "0"], "out of range"),
]

PLANS = {
    "badname.yaml": 'vms:\n  "../x": {image: debian-12}\n',
    "notmap.yaml": "vms: [1, 2]\n",
    "size0.yaml": "pools:\n  e2e-p: {size: 0}\n",
}


def _world() -> dict[str, Any]:
    """What a bad command must leave exactly as it was (read in-process: quicker than the CLI)."""
    state = Path(os.environ["VMCTL_STATE_DIR"])
    with vmctl_api.connect() as host:
        domains = sorted(host.hv.domains())
    return {
        "domains": domains,
        "images": sorted(image.name for image in vmctl_api.image_list()),
        "files": sorted(str(p.relative_to(state)) for p in state.rglob("*") if "runtime" not in p.parts),
        "sentinel": sorted(p.name for p in SENTINEL.parent.glob(f"{SENTINEL.name}.*")),
    }


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("plans")
    for name, text in PLANS.items():
        (path / name).write_text(text)
    for suffix in ("qcow2", "serial.log", "seed.iso", "json"):
        SENTINEL.with_name(f"{SENTINEL.name}.{suffix}").write_text("not vmctl's\n")
    yield path
    for p in SENTINEL.parent.glob(f"{SENTINEL.name}.*"):
        p.unlink()


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a)[:40] for a, _ in CASES])
def test_bad_input_is_one_line_exit_1_and_changes_nothing(runtime: dict[str, Any], plans: Path,
                                                          args: list[str], message: str) -> None:
    argv = [a.format(plans=plans) for a in args]
    before = _world()
    started = time.monotonic()
    done = vmctl(*argv, check=False, timeout=60)
    took = time.monotonic() - started
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert all(line.startswith(("error:", "hint:", "[")) for line in done.stderr.splitlines()), done.stderr
    assert _world() == before
    print(f"\n{took:.2f}s vmctl {' '.join(argv)}")  # the time goes to docs/reliability.md, not into a test
