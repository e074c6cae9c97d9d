"""The private runtime and the doctor, for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .conftest import VMCTL, vmctl, vmctl_json


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(") ")[1][:1]


def test_start_twice_is_one_runtime(runtime: dict[str, Any]) -> None:
    before = vmctl_json("hypervisor", "status")  # (not the fixture's: other modules restart daemons)
    again = vmctl_json("hypervisor", "start")
    assert again["pids"] == before["pids"] and again["started"] == []
    assert again["running"] and all(_alive(pid) for pid in again["pids"].values())


def test_status_reports_the_namespace_and_socket(runtime: dict[str, Any]) -> None:
    status = vmctl_json("hypervisor", "status")
    assert status["running"] and status["netns_exists"]
    assert status["uri"].startswith("qemu:///system?socket=") and Path(status["uri"].split("=", 1)[1]).is_socket()
    assert len(status["children"]["network"]) >= 1  # the DHCP server of the isolated network


def test_network_lives_only_inside_the_namespace_with_no_way_out(runtime: dict[str, Any]) -> None:
    ns = runtime["netns"]
    inside = subprocess.run(["ip", "-n", ns, "-o", "link"], capture_output=True, text=True, check=True).stdout
    outside = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "vmctlbr0" in inside and "vmctlbr0" not in outside
    routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True, check=True).stdout
    assert "default" not in routes
    links = [line.split(":")[1].strip().split("@")[0] for line in inside.splitlines()]
    assert all(name == "lo" or name.startswith(("vmctlbr", "vnet")) for name in links), links


def test_commands_find_the_runtime_without_connect(runtime: dict[str, Any]) -> None:
    done = vmctl("doctor", "--json", check=False)
    report = json.loads(done.stdout)
    assert report["uri"] == runtime["uri"]
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["libvirt"]["ok"] and checks["network"]["ok"] and checks["storage pool"]["ok"]


def test_doctor_picks_an_accelerator_that_boots(runtime: dict[str, Any]) -> None:
    report = vmctl_json("doctor")
    assert report["accel"] in ("kvm", "tcg")
    probes = {p["accel"]: p for p in report["probes"]}
    assert probes[report["accel"]]["ok"]
    if report["accel"] == "tcg" and os.path.exists("/dev/kvm"):
        assert probes["kvm"]["ok"] is False  # /dev/kvm is there, yet KVM did not boot the kernel
    verdict = Path(os.environ["VMCTL_STATE_DIR"]) / "accel.json"
    assert verdict.exists()  # cached for the domain type


def test_unreachable_uri_is_a_clear_error(runtime: dict[str, Any]) -> None:
    done = vmctl("--connect", "qemu:///system?socket=/nonexistent/sock", "doctor", "--json", check=False)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    libvirt = next(c for c in report["checks"] if c["name"] == "libvirt")
    assert not libvirt["ok"] and "cannot connect" in libvirt["detail"]


def test_stop_ends_exactly_what_start_started(runtime: dict[str, Any]) -> None:
    """A second, separate runtime: start it, stop it, and find nothing of it left."""
    state = Path(tempfile.mkdtemp(prefix="vmctl-e2e-stop-", dir="/var/tmp"))  # passable for libvirt-qemu
    env = {**os.environ, "VMCTL_STATE_DIR": str(state), "VMCTL_NETNS": f"vmctl-stop-{os.getpid()}"}
    live = vmctl_json("hypervisor", "status")["pids"]
    started = json.loads(
        subprocess.run(
            [*VMCTL, "hypervisor", "start", "--json"], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    pids = [*started["pids"].values(), *started["children"]["network"]]
    assert all(_alive(pid) for pid in pids)
    subprocess.run([*VMCTL, "hypervisor", "stop"], env=env, check=True, capture_output=True)
    assert not any(_alive(pid) for pid in pids)
    assert not Path("/run/netns", env["VMCTL_NETNS"]).exists()
    assert all(_alive(pid) for pid in live.values())  # the other runtime is untouched
    stopped = subprocess.run(
        [*VMCTL, "hypervisor", "status", "--json"], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(stopped.stdout)["running"] is False
    shutil.rmtree(state)
