"""Runtime.start and Runtime.stop on a runtime made of stand-ins.

The daemons, the guests' QEMU and dnsmasq are copies of ``sleep`` named like them
(their executables then have those names), started by these tests with their PID
files where the runtime keeps them; ``ip`` is never run: the runtime's commands
are recorded, and ``ip netns exec NS sh -c SCRIPT`` starts the stand-ins the
script names. Nothing of a real runtime is started or touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from vmctl._core.paths import RuntimePaths
from vmctl._core.proc import CommandResult
from vmctl.errors import RuntimeStateError
from vmctl.hypervisor import runtime as runtime_module
from vmctl.hypervisor.runtime import Runtime

SLEEP = shutil.which("sleep") or "/bin/sleep"
QEMU = "qemu-system-x86_64"


class Host:
    """The stand-in processes, the namespace's existence, and the commands run."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.paths = RuntimePaths(tmp_path / "runtime")
        self.runtime = Runtime(self.paths, netns="vmctl-unit")
        self.netns = False
        self.commands: list[list[str]] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, pid_file: Path) -> int:
        exe = self.bin / name
        if not exe.exists():
            shutil.copy(SLEEP, exe)
        child = subprocess.Popen([str(exe), "300"], stdin=subprocess.DEVNULL)
        self.procs[child.pid] = child
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{child.pid}\n")  # as the daemon does, once it runs
        return child.pid

    def daemon(self, name: str) -> int:
        pid = self.spawn(name, self.paths.pid_file(name))
        if name == "libvirtd":
            self.paths.sock_dir.mkdir(parents=True, exist_ok=True)
            self.paths.socket.touch()
        return pid

    def guest(self, name: str = "vm1") -> int:
        return self.spawn(QEMU, self.paths.run / "qemu" / f"{name}.pid")

    def dhcp(self) -> int:
        return self.spawn("dnsmasq", self.paths.run / "network" / "default.pid")

    def kill(self, pid: int) -> None:
        self.procs[pid].kill()
        self.procs[pid].wait(5)

    def alive(self, pid: int) -> bool:
        return self.procs[pid].poll() is None

    def run(self, argv: Sequence[str], **_: object) -> CommandResult:
        self.commands.append(list(argv))
        if list(argv[:2]) == ["ip", "netns"] and argv[2] in ("add", "delete"):
            self.netns = argv[2] == "add"
        if list(argv[:3]) == ["ip", "netns", "exec"]:
            for line in argv[-1].splitlines():
                if "--daemon" in line:
                    self.daemon(line.split()[0])
        return CommandResult(" ".join(argv), 0, "", "")

    def scripts(self) -> list[str]:
        return [argv[-1] for argv in self.commands if argv[:3] == ["ip", "netns", "exec"]]

    def cleanup(self) -> None:
        for child in self.procs.values():
            if child.poll() is None:
                child.kill()
            child.wait(5)


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    made = Host(tmp_path)
    monkeypatch.setattr(runtime_module, "run", made.run)
    monkeypatch.setattr(runtime_module, "_netns_exists", lambda name: made.netns)
    yield made
    made.cleanup()


def _running(host: Host, guests: int = 1) -> dict[str, int]:
    host.netns = True
    found = {"virtlogd": host.daemon("virtlogd"), "libvirtd": host.daemon("libvirtd"), "network": host.dhcp()}
    for n in range(guests):
        found[f"qemu{n}"] = host.guest(f"vm{n}")
    return found


def test_a_dead_virtlogd_is_started_alone_and_libvirtd_and_the_guests_keep_running(host: Host) -> None:
    was = _running(host, guests=2)
    host.kill(was["virtlogd"])
    for name in runtime_module.CONFIG_FILES:  # what the running daemons were started with
        (host.paths.etc / name).parent.mkdir(parents=True, exist_ok=True)
        (host.paths.etc / name).write_text("# as it was\n")
    status = host.runtime.start(timeout=5)
    assert all(host.alive(was[k]) for k in ("libvirtd", "qemu0", "qemu1", "network"))
    assert status.running and status.started == ["virtlogd"]
    assert status.kept == {"libvirtd": [was["libvirtd"]], "qemu": sorted([was["qemu0"], was["qemu1"]]),
                           "network": [was["network"]]}
    assert status.pids["libvirtd"] == was["libvirtd"] and status.pids["virtlogd"] != was["virtlogd"]
    [script] = host.scripts()
    assert "virtlogd --daemon" in script and "libvirtd --daemon" not in script
    for src, dst in host.paths.bind_mounts():  # the same mounts the first daemons saw
        assert f"mount --bind {src} {dst}" in script
    assert ["ip", "netns", "add", "vmctl-unit"] not in host.commands
    assert (host.paths.etc / "qemu.conf").read_text() == "# as it was\n"


def test_a_dead_libvirtd_is_started_alone_and_the_guests_keep_running(host: Host) -> None:
    was = _running(host)
    host.kill(was["libvirtd"])  # its socket file stays behind, as after a crash
    status = host.runtime.start(timeout=5)
    assert all(host.alive(was[k]) for k in ("virtlogd", "qemu0", "network"))
    assert status.running and status.started == ["libvirtd"]
    assert status.kept == {"virtlogd": [was["virtlogd"]], "qemu": [was["qemu0"]], "network": [was["network"]]}
    [script] = host.scripts()
    assert "libvirtd --daemon" in script and "virtlogd --daemon" not in script


def test_both_daemons_dead_are_started_and_the_guests_keep_running(host: Host) -> None:
    was = _running(host)
    host.kill(was["libvirtd"])
    host.kill(was["virtlogd"])
    status = host.runtime.start(timeout=5)
    assert host.alive(was["qemu0"]) and host.alive(was["network"])
    assert status.started == ["virtlogd", "libvirtd"] and status.kept == {"qemu": [was["qemu0"]],
                                                                          "network": [was["network"]]}
    assert ["ip", "netns", "add", "vmctl-unit"] not in host.commands


def test_libvirtd_without_its_socket_is_restarted_alone(host: Host) -> None:
    was = _running(host)
    host.paths.socket.unlink()
    status = host.runtime.start(timeout=5)
    assert host.alive(was["virtlogd"]) and host.alive(was["qemu0"])
    assert not host.alive(was["libvirtd"]) and status.pids["libvirtd"] != was["libvirtd"]
    assert status.running and status.started == ["libvirtd"]
    assert "libvirtd" not in status.kept


def test_a_running_runtime_is_left_as_it_is(host: Host) -> None:
    was = _running(host)
    status = host.runtime.start(timeout=5)
    assert status.running and status.started == [] and host.commands == []
    assert status.kept["libvirtd"] == [was["libvirtd"]] and status.kept["qemu"] == [was["qemu0"]]


def test_nothing_left_is_a_fresh_start(host: Host) -> None:
    status = host.runtime.start(timeout=5)
    assert status.running and status.started == ["virtlogd", "libvirtd"] and status.kept == {}
    assert host.commands[0] == ["ip", "netns", "add", "vmctl-unit"]
    [script] = host.scripts()
    assert script.index("virtlogd --daemon") < script.index("libvirtd --daemon")
    assert (host.paths.etc / "qemu.conf").exists()


def test_remains_without_their_namespace_are_refused(host: Host) -> None:
    guest = host.guest()
    with pytest.raises(RuntimeStateError, match="namespace vmctl-unit is gone"):
        host.runtime.start(timeout=5)
    assert host.alive(guest) and host.commands == []


def test_the_daemons_identities_are_recorded_and_a_reused_pid_is_not_the_daemon(host: Host) -> None:
    host.runtime.start(timeout=5)
    state = json.loads(host.paths.state_file.read_text())
    libvirtd = state["identities"]["libvirtd"]
    assert libvirtd["pid"] == state["pids"]["libvirtd"] and libvirtd["exe"].endswith("/libvirtd")
    libvirtd["start_ticks"] -= 1  # the recorded daemon exited; the PID is another process's now
    host.paths.state_file.write_text(json.dumps(state))
    status = host.runtime.status()
    assert status.pids["libvirtd"] is None and status.pids["virtlogd"] == state["pids"]["virtlogd"]


def test_stop_ends_the_runtimes_processes_and_nothing_else(host: Host) -> None:
    was = _running(host)
    stale = host.guest("old")  # a QEMU under a PID file from before a reboot: not ours
    before_boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME) - 3600
    os.utime(host.paths.run / "qemu" / "old.pid", (before_boot, before_boot))
    bystander = host.spawn("sleep", host.paths.run / "qemu" / "reused.pid")  # its PID in a QEMU PID file
    status = host.runtime.stop()
    assert not status.running and not host.netns
    assert not any(host.alive(pid) for pid in was.values())
    assert host.alive(stale) and host.alive(bystander)
    assert not host.paths.pid_file("libvirtd").exists() and not host.paths.state_file.exists()


def test_stop_reports_a_process_that_outlives_sigkill_and_keeps_the_namespace(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    was = _running(host)
    real = runtime_module.terminate

    def stuck_guest(process: object, *args: object, **kwargs: object) -> bool:
        pid = getattr(process, "pid", process)
        return False if pid == was["qemu0"] else bool(real(process, *args, **kwargs))  # type: ignore[arg-type]

    monkeypatch.setattr(runtime_module, "terminate", stuck_guest)
    with pytest.raises(RuntimeStateError, match=rf"still running after SIGKILL: {QEMU} \(PID {was['qemu0']}"):
        host.runtime.stop()
    assert host.netns and ["ip", "netns", "delete", "vmctl-unit"] not in host.commands
    assert not host.alive(was["libvirtd"]) and not host.alive(was["virtlogd"])
