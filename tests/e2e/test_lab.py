"""The boot lab end to end: one run of each profile on the baked Docker image,
with container timings inside the VMs and on the host (a dockerd started here),
a warm start, the JSON and the chart.
Structure and sanity only: no timing thresholds (docs/lab.md has the numbers)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmctl.lab.data import BOOT_TO_SSH, PHASES

from .conftest import BAKED_IMAGE, vmctl, vmctl_json

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def host_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker Engine on the host, started by hand as this machine allows it: no
    bridge, no iptables, private socket and directories; stopped by its PID."""
    root = tmp_path_factory.mktemp("dockerd")
    sock = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "-H", sock,
                             "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
                             "--pidfile", str(root / "docker.pid")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", sock, "version"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start: {(root / 'dockerd.log').read_text()[-500:]}")
            time.sleep(0.5)
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


@pytest.fixture(scope="module")
def lab(baked_image: dict[str, Any], host_docker: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("lab")
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = host_docker
    try:
        done = vmctl("lab", "boot", "--runs", "1", "--profile", "stock", "--profile", "fast", "--image", BAKED_IMAGE,
                     "--containers", "3", "--warm", "--json", str(out / "lab.json"), "--plot", str(out / "lab.png"))
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
    return {"result": json.loads((out / "lab.json").read_text()), "png": (out / "lab.png").read_bytes(),
            "stdout": done.stdout}


def test_each_run_reaches_every_phase_in_boot_order(lab: dict[str, Any]) -> None:
    result = lab["result"]
    assert result["accel"] in ("kvm", "tcg")
    assert [r["profile"] for r in result["runs"]] == ["stock", "fast"]
    for run in result["runs"]:
        phases = run["phases"]
        assert [p for p in PHASES if p in phases] == [p for p in PHASES if p != "docker_ready"]
        times = [phases[p] for p in PHASES if p in phases]
        assert times == sorted(times) and times[0] > 0, phases
        assert 0 < phases[BOOT_TO_SSH] < phases["ssh_login"] <= phases["cloud_init"] <= phases["ready"]


def test_the_guest_reports_its_own_boot(lab: dict[str, Any]) -> None:
    stock, fast = lab["result"]["runs"]
    for run in (stock, fast):
        assert run["guest"]["systemd"]["kernel"] > 0 and run["guest"]["systemd"]["userspace"] > 0
        assert run["guest"]["systemd_blame"]
    # cloud-init set up the stock VM; it never ran in the fast one (no user-data)
    assert stock["guest"]["cloud_init_blame"] and fast["guest"]["cloud_init_blame"] == []
    units = {r["profile"]: {b["unit"] for b in r["guest"]["systemd_blame"]} for r in (stock, fast)}
    # the profiles really differ: stock runs cloud-init's stages before sshd, fast masks them
    assert "cloud-init-local.service" in units["stock"] or "cloud-init.service" in units["stock"]
    assert not {"cloud-init-local.service", "cloud-init.service"} & units["fast"]
    guest = lab["result"]["guest"]
    assert guest["cloud_init"] and guest["docker"] and guest["kernel"]


def test_summary_comparison_containers_and_warm_start(lab: dict[str, Any]) -> None:
    result = lab["result"]
    assert set(result["summary"]) == {"stock", "fast"}
    for profile in ("stock", "fast"):
        s = result["summary"][profile][BOOT_TO_SSH]
        assert s["n"] == 1 and s["min"] == s["median"] == s["max"] > 0
    assert result["comparison"]["fast_over_stock"] > 0 and result["comparison"]["fast_over_stock_ready"] > 0
    assert "ready (up returned)" in lab["stdout"]
    vm = result["containers"]["vm"]
    assert len(vm["runs"]) == 6 and all(t > 0 for t in vm["runs"]) and vm["summary"]["n"] == 6
    host = result["containers"]["host"]  # the engine host_docker started
    assert host["engine"] and len(host["runs"]) == 3 and all(t > 0 for t in host["runs"])
    assert len(result["warm"]["runs"]) == 2 and all(t > 0 for t in result["warm"]["runs"])
    assert {"kernel", "qemu", "libvirt", "vmctl"} <= set(result["host"])


def test_table_chart_and_nothing_left_behind(lab: dict[str, Any]) -> None:
    assert "boot to SSH" in lab["stdout"] and "fast over stock" in lab["stdout"]
    assert lab["png"].startswith(b"\x89PNG")
    assert not [m for m in vmctl_json("ls") if m["name"].startswith("lab-")]


def test_bad_lab_input_is_refused_before_anything_boots(runtime: dict[str, Any], tmp_path: Path) -> None:
    done = vmctl("lab", "boot", "--runs", "0", check=False)
    assert done.returncode == 1 and "runs 0 is out of range" in done.stderr
    done = vmctl("lab", "boot", "--json", str(tmp_path / "missing/lab.json"), check=False)
    assert done.returncode == 1 and "not a writable directory" in done.stderr
    assert not [m for m in vmctl_json("ls") if m["name"].startswith("lab-")]


def test_an_image_without_the_lean_initramfs_is_refused_up_front(runtime: dict[str, Any]) -> None:
    """An image built before the fast profile's lean initramfs: its record, pointing at the
    test image's disk, without one. Neither the lab nor up boots anything for it."""
    from dataclasses import replace

    from vmctl.images.catalog import Cache

    from .conftest import IMAGE

    cache = Cache()
    old = replace(cache.require(IMAGE), name="e2e-old", lean_initrd=None)
    cache.publish(old)
    try:
        for args in (("lab", "boot", "--profile", "stock", "--profile", "fast", "--image", "e2e-old"),
                     ("up", "e2e-old-vm", "--image", "e2e-old", "--profile", "fast")):
            done = vmctl(*args, check=False)
            assert done.returncode == 1, done.stderr
            assert "image 'e2e-old' predates the fast profile" in done.stderr and "vmctl image build" in done.stderr
        assert not [m for m in vmctl_json("ls") if m["name"].startswith(("lab-", "e2e-old"))]
    finally:
        cache.file("e2e-old", "json").unlink()


def test_the_pool_lab_starts_vms_at_once_and_reads_their_memory(baked_image: dict[str, Any]) -> None:
    done = vmctl("lab", "pool", "--sizes", "1,2", "--image", BAKED_IMAGE, "--idle", "5", "--json", "-")
    result = json.loads(done.stdout)
    assert result["config"]["profile"] == "fast"  # the baked image's default
    one, two = result["sizes"]
    assert (one["n"], len(one["ready"]), two["n"], len(two["ready"])) == (1, 1, 2, 2)
    assert two["total"] == max(two["ready"]) and result["comparison"]["2_over_1"] > 0
    for size in (one, two):
        assert size["errors"] == {} and len(size["memory"]) == size["n"]
        for vm in size["memory"]:  # QEMU holds some of what the guest was given, and its own code besides
            assert 0 < vm["pss_mib"] <= vm["rss_mib"] < vm["configured_mib"] + 512, vm
    assert not [m for m in vmctl_json("ls") if m["name"].startswith("lab-")]
