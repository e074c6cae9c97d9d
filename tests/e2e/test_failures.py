"""Bad input is refused before anything is made; a failed phase cleans up."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

import vmctl

from .conftest import IMAGE
from .conftest import vmctl as run_vmctl


def _leftovers(name: str) -> list[str]:
    files = [
        p.name for p in (Path(os.environ["VMCTL_STATE_DIR"]) / "machines").glob(f"{name}.*") if p.suffix != ".lock"
    ]
    with vmctl.connect() as host:
        domains = [d for d in host.hv.domains() if d == name]
    return files + domains


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad<name>"], "invalid name 'bad<name>'"),
        (["a;rm -rf"], "invalid name 'a;rm -rf'"),
        (["../etc"], "invalid name '../etc'"),
        (["x" * 64], "invalid name"),
        (["okname", "--image", "nope-9"], "unknown image 'nope-9'"),
        (["okname", "--memory", "64"], "memory (MiB) 64 is out of range"),
        (["okname", "--memory", "99999999"], "memory (MiB) 99999999 is out of range"),
        (["okname", "--cpus", "0"], "vCPUs 0 is out of range"),
        (["okname", "--cpus", "64"], "vCPUs 64 is more than the host's"),
        (["okname", "--ssh-key", "/nonexistent/key.pub"], "cannot read SSH key file /nonexistent/key.pub"),
        (["okname", "--network", "bad net"], "invalid network 'bad net'"),
        (["okname", "--boot", "kernel", "--user", "root"], "invalid login user 'root'"),
        (["okname", "--publish", "99999:80"], "invalid port '99999:80': 99999 is not in 1-65535"),
        (["okname", "--publish", "80:80/sctp"], "invalid port '80:80/sctp': protocol 'sctp' is not tcp or udp"),
        (["okname", "--publish", "localhost:80:80"], "invalid port 'localhost:80:80'"),
        (["okname", "--publish", "8080:80", "--publish", "0.0.0.0:8080:81"], "both want host port 8080/tcp"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_is_made(
    runtime: dict[str, Any], args: list[str], message: str
) -> None:
    done = run_vmctl("up", *args, check=False, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1 and message in error[0], done.stderr
    assert _leftovers("okname") == []


def test_a_host_port_already_taken_is_refused_before_anything_is_made(runtime: dict[str, Any]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_vmctl("up", "okname", "--publish", f"{port}:80", check=False, timeout=120)
    assert done.returncode == 1
    expected = f"error: port 127.0.0.1:{port}:80/tcp: 127.0.0.1:{port}/tcp on the host: "
    assert done.stderr.startswith(expected), done.stderr
    assert "hint:" in done.stderr and _leftovers("okname") == []


def test_unreachable_libvirt_uri(runtime: dict[str, Any]) -> None:
    done = run_vmctl("--connect", "qemu+tcp://127.0.0.1:1/system", "up", "okname", check=False, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith(
        "error: cannot connect to libvirt at qemu+tcp://127.0.0.1:1/system"
    )
    assert "hint:" in done.stderr


def test_a_failed_phase_says_which_and_removes_everything(runtime: dict[str, Any], tmp_path: Path) -> None:
    """cloud-init fails (a runcmd exits 1): up reports the phase and the console, and cleans up."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\nruncmd:\n  - [sh, -c, 'echo vmctl-broken-on-purpose; exit 1']\n")
    done = run_vmctl("up", "e2e-broken", "--image", IMAGE, "--cpus", "1", "--user-data", str(bad), check=False)
    assert done.returncode == 1
    error = next(line for line in done.stderr.splitlines() if line.startswith("error:"))
    assert (
        error.startswith("error: e2e-broken: cloud_init failed after") and "cloud-init did not finish cleanly" in error
    )
    assert "hint: console:" in done.stderr
    assert _leftovers("e2e-broken") == []
