"""The VM lifecycle, for real: up (two processes at once, both profiles: a stock
disk boot set up by cloud-init, a fast kernel boot set up by vmctl's own units),
SSH with a pinned host key, copy, console, power, and down.

The two VMs are shared by every test in this module to keep the suite short."""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmctl
from vmctl.guest.keys import generate
from vmctl.guest.ssh import Endpoint, SSHConnection

from .conftest import IMAGE, VMCTL, listed, qemu_pids, run_readme_python, running, traces, until, vmctl_json
from .conftest import vmctl as run_vmctl

DISK, KERNEL, RACE = "e2e-disk", "e2e-kernel", "e2e-race"
# DISK asks for the stock profile; KERNEL leaves it to the default (fast, for a built image)
SPECS = {DISK: ["--image", IMAGE, "--profile", "stock"], KERNEL: ["--image", IMAGE, "--cpus", "1"]}
TWIN, RACE_DOWN = "second up of e2e-kernel", "down of e2e-race"  # (keys of the machines fixture)


def _state_dir() -> Path:
    return Path(os.environ["VMCTL_STATE_DIR"])


def _popen(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*VMCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def machines(runtime: dict[str, Any]) -> Iterator[dict[str, dict[str, Any]]]:
    """VMs made by vmctl processes running at the same time: three ups of different
    names, a second up of one of them, and a down racing the third one's up."""
    procs = {
        DISK: _popen("up", DISK, *SPECS[DISK], "--json"),
        KERNEL: _popen("up", KERNEL, *SPECS[KERNEL], "--json"),
        RACE: _popen("up", RACE, "--image", IMAGE, "--profile", "fast", "--cpus", "1", "--memory", "512"),
    }
    try:
        assert procs[RACE].stderr is not None
        race_printed = [procs[RACE].stderr.readline()]  # its first phase: it holds the VM's lock by now
        procs[TWIN] = _popen("up", KERNEL, *SPECS[KERNEL], "--json")
        procs[RACE_DOWN] = _popen("down", RACE)
        out = {name: p.communicate(timeout=1800) for name, p in procs.items()}
        for name, p in procs.items():
            assert p.returncode == 0, f"vmctl ({name}): {out[name][1]}"
        yield {
            **{name: json.loads(out[name][0]) for name in (DISK, KERNEL, TWIN)},
            RACE: {"up": "".join(race_printed) + out[RACE][1] + out[RACE][0],
                   "down": out[RACE_DOWN][0] + out[RACE_DOWN][1]},
        }
    finally:
        for name in (DISK, KERNEL, RACE):  # one at a time: a down refuses all if one name is gone
            run_vmctl("down", name, check=False)


class _Running(dict[str, dict[str, Any]]):
    """``vms[NAME]``: the shared VM as ``inspect`` sees it now, running: one a test removed
    or stopped is made or started again when a test asks for it, and only then."""

    def __missing__(self, name: str) -> dict[str, Any]:
        self[name] = running(name, *SPECS[name])
        return self[name]


@pytest.fixture
def vms(machines: dict[str, Any]) -> _Running:
    """The two shared VMs, each made sure of as a test names it (so no test needs
    another to have run first, and none boots a VM it does not use)."""
    return _Running()


def test_two_ups_of_one_name_at_once_make_one_vm(machines: dict[str, Any]) -> None:
    assert machines[TWIN]["host_key"] == machines[KERNEL]["host_key"]
    assert machines[TWIN]["mac"] == machines[KERNEL]["mac"] and machines[TWIN]["complete"] is True


def test_a_down_racing_an_up_waits_for_it_then_removes_everything(machines: dict[str, Any]) -> None:
    race = machines[RACE]
    assert f"{RACE} is up" in race["up"], race
    assert f"waiting for VM {RACE} (held by PID" in race["down"] and f"removed {RACE}" in race["down"], race
    assert traces(RACE) == []


def test_up_reports_the_vm_and_its_phase_timings(machines: dict[str, dict[str, Any]]) -> None:
    for name in (DISK, KERNEL):
        vm = machines[name]
        assert vm["name"] == name and vm["state"] == "running" and vm["user"] == "debian"
        assert vm["ip"].startswith("192.168.150.")
        assert set(vm["timings"]) == {"define", "start", "ip", "ssh", "cloud_init", "total"}
        assert vm["timings"]["total"] >= sum(v for k, v in vm["timings"].items() if k != "total") - 1
    assert machines[KERNEL]["spec"]["boot"] == "kernel" and machines[DISK]["spec"]["boot"] == "disk"
    assert machines[KERNEL]["spec"]["profile"] == "fast" and machines[DISK]["spec"]["profile"] == "stock"


@pytest.mark.parametrize("name", [DISK, KERNEL])
def test_ssh_runs_commands_and_returns_their_exit_code(vms: dict[str, Any], name: str) -> None:
    assert vms[name]["state"] == "running"
    assert run_vmctl("ssh", name, "--", "hostname").stdout.strip() == name
    assert run_vmctl("ssh", name, "--", "exit 7", check=False).returncode == 7
    status = run_vmctl("ssh", name, "--", "cloud-init", "status").stdout
    # the fast VM had no user-data: cloud-init never ran in it (vmctl's units did its work)
    assert ("status: done" if name == DISK else "status: disabled") in status, status


# What the guest looks like after its first boot, as the login user sees it (root's files via sudo).
FACTS = {
    "hostname": "hostname",
    "hosts": "cat /etc/hosts",
    "user": "getent passwd debian | cut -d: -f1,3-4,5,6,7",
    "groups": "id -nG debian",
    "password": "sudo passwd -S debian | cut -d' ' -f2",  # L: locked
    "sudo": "sudo -l -U debian | sed -n '/may run/,$p'",
    "authorized_keys": "stat -c '%a %U' ~/.ssh ~/.ssh/authorized_keys && cat ~/.ssh/authorized_keys",
    "root_keys": "sudo stat -c '%n %a %s %U' /root/.ssh /root/.ssh/authorized_keys",  # disable_root's empty file
    "sshd": "sudo sshd -T | grep -E '^(passwordauthentication|pubkeyauthentication|permitrootlogin) '",
    "host_keys": "ls /etc/ssh/ | grep ^ssh_host_",
    "root_partition": "cat /sys/class/block/vda1/size /sys/class/block/vda/size",
    "root_fs": "df -B4096 --output=size / | tail -1",
}


def test_a_fast_vm_is_set_up_as_cloud_init_sets_up_a_stock_one(vms: dict[str, Any]) -> None:
    """vmctl's early units (fast, KERNEL) against cloud-init (stock, DISK), same image and disk size:
    the same user, groups, keys, sudo rule, sshd settings, /etc/hosts, grown partition and file system."""
    assert vms[DISK]["state"] == "running" and vms[KERNEL]["state"] == "running"
    seen = {}
    for name in (DISK, KERNEL):
        seen[name] = {fact: run_vmctl("ssh", name, "--", command).stdout.replace(name, "NAME")
                      for fact, command in FACTS.items()}
    for fact in FACTS:
        assert seen[KERNEL][fact] == seen[DISK][fact], (fact, seen[DISK][fact], seen[KERNEL][fact])
    partition, disk = (int(n) for n in seen[KERNEL]["root_partition"].split())
    assert partition == disk - 2048 - 33  # from 1 MiB in to where growpart ends it on the 10 GiB disk
    assert int(seen[KERNEL]["root_fs"]) * 4096 > 9 * 2**30  # and the file system with it


def test_interactive_ssh_reads_commands_from_stdin(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    done = subprocess.run(
        [*VMCTL, "ssh", DISK], input="echo from-stdin-$((6*7))\n", capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "from-stdin-42" in done.stdout


def test_the_guest_has_exactly_the_pinned_host_key(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    with vmctl.connect() as host:
        machine = host.get(DISK)
        guest_key = machine.run("sudo cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        assert guest_key == machine.record.host_key.split()[:2]
        others = machine.run("ls /etc/ssh/").stdout.split()
        assert [k for k in others if k.startswith("ssh_host_")] == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
        machine.close()


def test_another_host_key_is_refused(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    with vmctl.connect() as host:
        machine = host.get(DISK)
        real = machine.endpoint()
        forged = Endpoint(real.machine, real.address, real.user, real.client_key, generate().public, netns=real.netns)
        with pytest.raises(vmctl.HostKeyMismatch) as e, SSHConnection(forged) as guest:
            guest.run("true")
        assert e.value.machine == DISK and e.value.expected != e.value.got
        assert SSHConnection(real).run("true").rc == 0  # the pinned key itself is accepted


def test_python_api_runs_and_copies(vms: dict[str, Any], tmp_path: Path) -> None:
    assert vms[DISK]["state"] == "running" and vms[KERNEL]["state"] == "running"
    with vmctl.connect() as host:
        names = [m.name for m in host.list()]
        assert DISK in names and KERNEL in names
        machine = host.get(KERNEL)
        result = machine.run(["sh", "-c", "echo $0 && exit 3", "it's quoted"])
        assert (result.rc, result.stdout) == (3, "it's quoted\n")
        src = tmp_path / "payload.bin"
        src.write_bytes(os.urandom(300_000))
        machine.put(src, "/tmp/payload.bin")
        machine.get("/tmp/payload.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
        machine.close()
        machine.close()  # closing twice is safe


def test_cp_both_ways(vms: dict[str, Any], tmp_path: Path) -> None:
    assert vms[DISK]["state"] == "running"
    (tmp_path / "up.txt").write_text("hello guest\n")
    run_vmctl("cp", str(tmp_path / "up.txt"), f"{DISK}:/tmp/")
    assert run_vmctl("ssh", DISK, "--", "cat /tmp/up.txt").stdout == "hello guest\n"
    run_vmctl("cp", f"{DISK}:/etc/hostname", str(tmp_path))
    assert (tmp_path / "hostname").read_text().strip() == DISK


def test_ls_and_inspect(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running" and vms[KERNEL]["state"] == "running"
    rows = {m["name"]: m for m in json.loads(run_vmctl("ls", "--json").stdout)}
    assert rows[DISK]["state"] == "running" and rows[DISK]["ip"] == vms[DISK]["ip"]
    assert rows[DISK]["complete"] is True and rows[DISK]["missing_phases"] == []
    info = json.loads(run_vmctl("inspect", KERNEL, "--json").stdout)
    assert info["host_key_fingerprint"].startswith("SHA256:") and info["spec"]["cpus"] == 1
    assert info["netns"] == os.environ["VMCTL_NETNS"]


def test_a_guest_is_private_to_root_and_its_unprivileged_qemu(vms: dict[str, Any]) -> None:
    """No other local user can read a guest's disk, seed or console; QEMU is not root."""
    assert vms[DISK]["state"] == "running"
    qemu_user = pwd.getpwnam("libvirt-qemu")
    assert os.stat(f"/proc/{_qemu_pid(DISK)}").st_uid == qemu_user.pw_uid
    machines_dir = _state_dir() / "machines"
    for directory in (_state_dir(), machines_dir):
        st = directory.stat()
        assert stat.S_IMODE(st.st_mode) == 0o710 and grp.getgrgid(st.st_gid).gr_name == "libvirt-qemu", directory
    for suffix in ("qcow2", "seed.iso", "serial.log"):
        path = machines_dir / f"{DISK}.{suffix}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (machines_dir / f"{DISK}.qcow2").stat().st_uid == qemu_user.pw_uid  # handed over while it runs


def test_console_shows_the_boot(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    text = run_vmctl("console", DISK).stdout
    assert "Linux version" in text and "Cloud-init" in text


def test_up_again_with_the_same_spec_returns_it_unchanged(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    # without --profile: the VM keeps the stock profile it was made with, though the default is fast now
    again = json.loads(run_vmctl("up", DISK, "--image", IMAGE, "--json").stdout)
    assert again["created"] == vms[DISK]["created"] and again["ip"] == vms[DISK]["ip"]


def test_up_with_a_different_spec_names_the_difference(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    done = run_vmctl("up", DISK, "--image", IMAGE, "--cpus", "1", "--memory", "768", check=False)
    assert done.returncode == 1
    assert "cpus: 2 -> 1" in done.stderr and "memory_mib: 1024 -> 768" in done.stderr


def test_stop_and_start(vms: dict[str, Any]) -> None:
    assert vms[KERNEL]["state"] == "running"
    run_vmctl("stop", KERNEL)
    assert json.loads(run_vmctl("inspect", KERNEL, "--json").stdout)["state"] == "shutoff"
    run_vmctl("start", KERNEL)
    assert run_vmctl("ssh", KERNEL, "--", "hostname").stdout.strip() == KERNEL


def test_suspend_frees_the_host_and_resume_brings_the_vm_back_as_it_was(vms: dict[str, Any]) -> None:
    assert vms[KERNEL]["state"] == "running"
    events = _popen("events", "--json")
    try:
        run_vmctl("ssh", KERNEL, "--", "nohup sleep 3600 >/dev/null 2>&1 & echo $! > /tmp/e2e-sleeper")
        run_vmctl("suspend", KERNEL)
        assert listed(KERNEL)["state"] == "suspended"
        assert qemu_pids(KERNEL) == []  # its QEMU, and the memory it held, are gone
        time.sleep(15)  # long enough that a clock left as it was would be 15 s behind
        run_vmctl("resume", KERNEL)
        assert listed(KERNEL)["state"] == "running"
        out = run_vmctl("ssh", KERNEL, "--", "date +%s.%N; kill -0 $(cat /tmp/e2e-sleeper) && echo alive").stdout
        guest_clock, alive = out.split()
        assert alive == "alive"  # the same guest, not a new boot: its processes kept running
        assert abs(float(guest_clock) - time.time()) < 5, "the guest's clock was not corrected"
        bad = [run_vmctl("resume", KERNEL, check=False), run_vmctl("autostart", KERNEL, "on"),
               run_vmctl("stop", KERNEL), run_vmctl("suspend", KERNEL, check=False),
               run_vmctl("resume", KERNEL, check=False)]
        assert (bad[0].returncode, bad[3].returncode, bad[4].returncode) == (1, 1, 1)
        assert "error: e2e-kernel is running, not suspended" in bad[0].stderr
        assert "error: e2e-kernel is shutoff, not running" in bad[3].stderr
        assert "error: e2e-kernel is shutoff, not suspended" in bad[4].stderr
        assert listed(KERNEL)["state"] == "shutoff"
    finally:
        events.send_signal(signal.SIGINT)  # as Ctrl-C: it ends quietly
        out, err = events.communicate(timeout=60)
    assert events.returncode == 0, err
    seen = [(e["event"], e["detail"]) for e in map(json.loads, out.splitlines()) if e["name"] == KERNEL]
    wanted = [("suspended", "saved"), ("resumed", "restored"), ("stopped", "shutdown")]
    assert [e for e in seen if e in wanted] == wanted, seen


def test_hypervisor_start_starts_the_vms_marked_autostart(vms: dict[str, Any]) -> None:
    """KERNEL, off and marked autostart (as the test above leaves it): libvirtd dies, and
    `hypervisor start` brings it back and starts the VM; then the mark is taken off."""
    if listed(KERNEL) is None:
        assert vms[KERNEL]  # made again when this test runs without the one above
    run_vmctl("autostart", KERNEL, "on")
    run_vmctl("stop", KERNEL)  # (off already, in the usual order)
    pid = json.loads(run_vmctl("hypervisor", "status", "--json").stdout)["pids"]["libvirtd"]
    os.kill(pid, signal.SIGKILL)
    assert until(lambda: not json.loads(run_vmctl("hypervisor", "status", "--json").stdout)["running"])
    status = json.loads(run_vmctl("hypervisor", "start", "--json").stdout)
    assert status["autostarted"] == [KERNEL], status
    assert listed(KERNEL)["state"] == "running"
    assert run_vmctl("ssh", KERNEL, "--", "hostname").stdout.strip() == KERNEL
    run_vmctl("autostart", KERNEL, "off")
    assert json.loads(run_vmctl("inspect", KERNEL, "--json").stdout)["autostart"] is False
    assert json.loads(run_vmctl("hypervisor", "start", "--json").stdout)["autostarted"] == []


def test_qemu_killed_under_a_running_vm_shows_it_stopped_and_start_recovers(vms: dict[str, Any]) -> None:
    assert vms[KERNEL]["state"] == "running"
    qemu = _qemu_pid(KERNEL)
    os.kill(qemu, signal.SIGKILL)
    assert until(lambda: (listed(KERNEL) or {}).get("state") == "shutoff"), listed(KERNEL)
    run_vmctl("start", KERNEL)
    assert run_vmctl("ssh", KERNEL, "--", "hostname").stdout.strip() == KERNEL


@pytest.mark.parametrize("daemon", ["virtlogd", "libvirtd"])
def test_a_daemon_killed_under_running_guests_is_restarted_alone(vms: dict[str, Any], daemon: str) -> None:
    assert vms[DISK]["state"] == "running"
    before = json.loads(run_vmctl("hypervisor", "status", "--json").stdout)
    qemu = _qemu_pid(DISK)
    os.kill(before["pids"][daemon], signal.SIGKILL)
    assert until(lambda: not json.loads(run_vmctl("hypervisor", "status", "--json").stdout)["running"])
    after = json.loads(run_vmctl("hypervisor", "start", "--json").stdout)
    assert after["running"] and after["started"] == [daemon], after
    assert _qemu_pid(DISK) == qemu  # the guest kept running, untouched
    assert listed(DISK)["state"] == "running"  # libvirtd knows it (again)
    assert run_vmctl("ssh", DISK, "--", "hostname").stdout.strip() == DISK


def _qemu_pid(name: str) -> int:
    pids = qemu_pids(name)
    assert len(pids) == 1, f"QEMU processes for {name}: {pids}"
    return pids[0]


def test_a_snapshot_brings_the_running_vm_back_with_its_metadata_and_down_removes_it(vms: dict[str, Any]) -> None:
    assert vms[KERNEL]["state"] == "running"
    run_vmctl("ssh", KERNEL, "--", "echo before > ~/mark; nohup sleep 3600 >/dev/null 2>&1 & echo $! > ~/sleeper")
    taken = json.loads(run_vmctl("snapshot", "create", KERNEL, "e2e-snap", "-d", "a note", "--json").stdout)
    assert (taken["name"], taken["memory"], taken["state"], taken["description"]) == ("e2e-snap", True, "running",
                                                                                      "a note")
    assert taken["memory_bytes"] > 0 and taken["current"]
    again = run_vmctl("snapshot", "create", KERNEL, "e2e-snap", check=False)
    assert again.returncode == 1 and "already has a snapshot named 'e2e-snap'" in again.stderr
    # after it: a file changed, a process gone, a port published (the VM's metadata changed)
    port = _free_port()
    run_vmctl("ssh", KERNEL, "--", "echo after > ~/mark; kill $(cat ~/sleeper)")
    run_vmctl("port", "add", KERNEL, f"{port}:22")
    assert vmctl_json("inspect", KERNEL)["spec"]["ports"] == [f"127.0.0.1:{port}:22/tcp"]
    time.sleep(5)  # so that a clock left at the snapshot's time would be behind
    run_vmctl("snapshot", "revert", KERNEL, "e2e-snap")
    out = run_vmctl("ssh", KERNEL, "--", "cat ~/mark; kill -0 $(cat ~/sleeper) && echo alive; date +%s.%N").stdout
    mark, alive, clock = out.split()
    assert (mark, alive) == ("before", "alive")
    assert abs(float(clock) - time.time()) < 4, "the guest's clock was not corrected"
    after = vmctl_json("inspect", KERNEL)
    assert after["spec"]["ports"] == [] and after["forwarder"] is None  # the metadata is the snapshot's
    assert after["host_key"] == vms[KERNEL]["host_key"]
    listing = vmctl_json("snapshot", "ls", KERNEL)
    assert [(s["name"], s["current"]) for s in listing] == [("e2e-snap", True)]
    for args, message in [(("revert", KERNEL, "nope"), "e2e-kernel has no snapshot named 'nope'"),
                          (("rm", KERNEL, "e2e-snap", "nope"), "e2e-kernel has no snapshot named 'nope'"),
                          (("create", KERNEL, "../x"), "invalid snapshot name")]:
        bad = run_vmctl("snapshot", *args, check=False)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
    assert [s["name"] for s in vmctl_json("snapshot", "ls", KERNEL)] == ["e2e-snap"]  # rm checked all first
    run_vmctl("stop", KERNEL)
    stopped = json.loads(run_vmctl("snapshot", "create", KERNEL, "e2e-off", "--json").stdout)
    assert (stopped["memory"], stopped["state"], stopped["memory_bytes"]) == (False, "shutoff", 0)
    run_vmctl("snapshot", "rm", KERNEL, "e2e-snap")
    assert [s["name"] for s in vmctl_json("snapshot", "ls", KERNEL)] == ["e2e-off"]
    run_vmctl("down", KERNEL)  # with its snapshot: it goes all the same
    assert listed(KERNEL) is None and not list(_state_dir().joinpath("machines").glob(f"{KERNEL}.*"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


RESIZED = "e2e-resize"


def test_set_grows_the_disk_live_and_at_start_and_changes_cpus_and_memory(runtime: dict[str, Any]) -> None:
    run_vmctl("up", RESIZED, "--image", IMAGE, "--cpus", "1", "--memory", "768", "--disk", "10")
    try:
        def facts() -> list[str]:
            return run_vmctl("ssh", RESIZED, "--", "nproc; free -m | awk '/^Mem/ {print $2}'; "
                             "df -BG --output=size / | tail -n 1").stdout.split()

        cpus, memory, disk = facts()
        assert (cpus, int(disk.rstrip("G")) <= 10) == ("1", True)
        # running: the disk (partition and file system too) and less memory, now; vCPUs at the next boot
        when = vmctl_json("set", RESIZED, "--disk", "12", "--memory", "640", "--cpus", "2")
        assert when == {"cpus": "at the next boot", "memory_mib": "now", "disk_gib": "now"}
        cpus, memory_now, disk = facts()
        assert cpus == "1" and int(memory_now) < int(memory) and int(disk.rstrip("G")) >= 11
        shrink = run_vmctl("set", RESIZED, "--disk", "11", check=False)
        assert shrink.returncode == 1 and "shrinking it to 11 GiB is refused" in shrink.stderr
        # stopped: the disk grows at the next start, by vmctl, whatever the profile's first-boot units did
        run_vmctl("stop", RESIZED)
        assert vmctl_json("set", RESIZED, "--disk", "14") == {"disk_gib": "at the next boot"}
        run_vmctl("start", RESIZED)
        cpus, _memory, disk = facts()
        assert cpus == "2" and int(disk.rstrip("G")) >= 13
        spec = vmctl_json("inspect", RESIZED)["spec"]
        assert (spec["cpus"], spec["memory_mib"], spec["disk_gib"]) == (2, 640, 14)
        # recorded: up with the new sizes finds nothing to change
        same = run_vmctl("up", RESIZED, "--image", IMAGE, "--cpus", "2", "--memory", "640", "--disk", "14")
        assert same.returncode == 0
    finally:
        run_vmctl("down", RESIZED, check=False)


def test_down_killed_midway_then_down_again_leaves_nothing(vms: dict[str, Any]) -> None:
    mac = vms[KERNEL]["mac"]
    first = _popen("down", KERNEL)  # it prints nothing until it is done: kill it a moment in
    time.sleep(0.4)
    first.kill()
    first.communicate()
    run_vmctl("down", KERNEL, check=False)  # converges whatever the first one finished (or did it all)
    assert traces(KERNEL, mac) == []
    assert run_vmctl("down", KERNEL, check=False).returncode == 1  # already gone: a clear error


def _get(url: str) -> str | None:
    """The body at ``url``, or None if nothing answers there (yet, or any more)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def test_port_add_and_rm_on_a_plain_vm(vms: dict[str, Any]) -> None:
    """A web server in the guest, published on the host's loopback, then unpublished."""
    assert vms[DISK]["state"] == "running"
    run_vmctl("ssh", DISK, "--", "nohup python3 -m http.server 8000 --directory /etc >/dev/null 2>&1 &")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert run_vmctl("port", "add", DISK, f"{port}:8000").stdout.strip() == f"{DISK}: 127.0.0.1:{port}:8000/tcp"
    assert until(lambda: _get(f"http://127.0.0.1:{port}/hostname")) == f"{DISK}\n"
    listed = json.loads(run_vmctl("port", "ls", DISK, "--json").stdout)
    assert listed == [{"port": f"127.0.0.1:{port}:8000/tcp", "source": "static", "state": "listening", "error": ""}]
    assert json.loads(run_vmctl("inspect", DISK, "--json").stdout)["spec"]["ports"] == [f"127.0.0.1:{port}:8000/tcp"]
    again = run_vmctl("port", "add", DISK, f"{port}:8001", check=False)
    assert again.returncode == 1 and f"{DISK} already publishes 127.0.0.1:{port}:8000/tcp" in again.stderr
    run_vmctl("port", "rm", DISK, str(port))
    assert _get(f"http://127.0.0.1:{port}/hostname") is None
    assert json.loads(run_vmctl("port", "ls", DISK, "--json").stdout) == []
    gone = run_vmctl("port", "rm", DISK, str(port), check=False)
    assert gone.returncode == 1 and f"{DISK} does not publish '{port}'" in gone.stderr


def test_port_add_of_a_taken_host_port_changes_nothing(vms: dict[str, Any]) -> None:
    assert vms[DISK]["state"] == "running"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_vmctl("port", "add", DISK, f"{port}:8000", check=False)
    assert done.returncode == 1 and f"127.0.0.1:{port}/tcp on the host" in done.stderr
    assert json.loads(run_vmctl("inspect", DISK, "--json").stdout)["spec"]["ports"] == vms[DISK]["spec"]["ports"]


def test_the_readme_python_api_example_runs_as_written(
    vms: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first Python example, on the shared VM (an identical spec is reused), ends it."""
    assert vms[DISK]["state"] == "running"
    run_readme_python(0, {"web": DISK})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{DISK} {vms[DISK]['ip']} ") and out[0].split()[2][0].isdigit()  # uname -r
    assert f"{DISK} running {vms[DISK]['ip']}" in out
    assert "no VM named 'no-such-vm'" in out[-1] and "vmctl ls" in out[-1]
    with vmctl.connect() as host:
        assert DISK not in list(host.hv.domains())
    assert not [p for p in (_state_dir() / "machines").glob(f"{DISK}.*") if p.suffix != ".lock"]

