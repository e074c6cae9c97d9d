"""Processes by PID: who a PID is (ProcessIdentity), PID files, and ending a process
without hanging or hitting a PID that is someone else's now. Also the forwarder's
PID file, which vmctl writes itself.

Every process signalled here is one these tests started (``sleep``, or a copy of it
under a daemon's name): nothing else on the host is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from vmctl._core import proc
from vmctl._core.proc import (
    ProcessIdentity,
    pid_file_owner,
    pid_file_text,
    read_pid,
    recorded_identity,
    terminate,
    written_by,
)
from vmctl.errors import HypervisorError
from vmctl.hypervisor.runtime import pid_alive
from vmctl.machines import forwarder

SLEEP = shutil.which("sleep") or "/bin/sleep"


class Fakes:
    """Processes started for a test: ``sleep``, run from a copy named like a daemon
    (its executable then has that name, as the real daemon's has), killed at the end."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.bin.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str = "sleep", pid_file: Path | None = None, argv: tuple[str, ...] = ()) -> int:
        exe = self.bin / name
        if not exe.exists():
            shutil.copy(SLEEP, exe)
        child = subprocess.Popen([str(exe), "300", *argv], stdin=subprocess.DEVNULL)
        self.procs.append(child)
        if pid_file is not None:  # as a daemon does: after it started
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(f"{child.pid}\n")
        return child.pid

    def popen(self, argv: list[str]) -> int:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.procs.append(child)
        return child.pid

    def running(self, pid: int) -> bool:
        """Whether our child ``pid`` still runs (reaping it if it exited)."""
        child = next(c for c in self.procs if c.pid == pid)
        return child.poll() is None

    def cleanup(self) -> None:
        for child in self.procs:
            if child.poll() is None:
                child.kill()
            child.wait(5)


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[Fakes]:
    made = Fakes(tmp_path / "bin")
    yield made
    made.cleanup()


def _stat_field_22(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


# ProcessIdentity ---------------------------------------------------------------------


def test_the_identity_of_a_process_is_its_executable_start_time_and_boot(fakes: Fakes) -> None:
    pid = fakes.spawn("virtlogd")
    me = ProcessIdentity.of(pid)
    assert me is not None
    assert me.exe == os.path.realpath(fakes.bin / "virtlogd") and me.name == "virtlogd"
    assert me.start_ticks == _stat_field_22(pid)
    assert me.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert me.matches()
    assert abs(me.started() - time.time()) < 5
    assert ProcessIdentity.from_dict(me.to_dict()) == me
    assert ProcessIdentity.from_dict({"pid": "1"}) is None


def test_an_exited_process_has_no_identity_and_its_record_no_longer_matches(fakes: Fakes) -> None:
    pid = fakes.spawn()
    me = ProcessIdentity.of(pid)
    assert me is not None
    os.kill(pid, 9)
    time.sleep(0.2)  # a zombie now: exited, not yet reaped
    assert proc.state(pid) == "Z" and ProcessIdentity.of(pid) is None and not me.matches()
    assert not fakes.running(pid)  # reaped: the PID is free for the next process
    assert ProcessIdentity.of(pid) is None and not me.matches()


def test_a_process_that_is_exiting_is_there_until_it_is_a_zombie(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exiting, a process releases its memory, and with it its executable, before it closes
    its files (a daemon's PID file lock, its sockets): it is not gone yet."""
    pid = fakes.spawn()
    me = ProcessIdentity.of(pid)
    assert me is not None
    monkeypatch.setattr(proc, "_exe", lambda pid: None)  # /proc/PID/exe of a process in do_exit
    assert me.matches() and ProcessIdentity.of(pid) is None  # there, but no longer identifiable


def test_a_reused_pid_is_not_the_recorded_process_and_is_not_signalled(fakes: Fakes) -> None:
    """A record from before a reboot, or from the PID's previous owner, names someone else."""
    pid = fakes.spawn()
    me = ProcessIdentity.of(pid)
    assert me is not None
    for other in (replace(me, start_ticks=me.start_ticks - 1), replace(me, boot_id="another-boot"),
                  replace(me, exe="/usr/sbin/libvirtd")):
        assert not other.matches()
        assert terminate(other, grace=0.1) is True  # the recorded process is gone: nothing to do
        assert fakes.running(pid)


# ending a process ----------------------------------------------------------------------


def test_terminate_ends_a_process_with_sigterm(fakes: Fakes) -> None:
    pid = fakes.spawn()
    me = ProcessIdentity.of(pid)
    assert terminate(me, grace=5) is True
    assert not fakes.running(pid)


def test_terminate_kills_a_process_that_ignores_sigterm(fakes: Fakes) -> None:
    pid = fakes.popen(["sh", "-c", f"trap '' TERM; exec {SLEEP} 300"])
    time.sleep(0.3)  # the exec: then the PID is sleep, with SIGTERM ignored
    started = time.monotonic()
    assert terminate(ProcessIdentity.of(pid), grace=0.5) is True
    assert not fakes.running(pid) and time.monotonic() - started < 3


def test_terminate_of_a_process_that_outlives_sigkill_returns_after_a_bounded_wait(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process in state D outlives SIGKILL: terminate says so, in bounded time."""
    pid = fakes.spawn()
    sent: list[int] = []
    monkeypatch.setattr(proc, "_signal", lambda pid, sig, group=False: sent.append(sig) or True)
    started = time.monotonic()
    assert terminate(ProcessIdentity.of(pid), grace=0.3, kill_wait=0.3) is False
    assert time.monotonic() - started < 2
    assert sent == [15, 9] and fakes.running(pid)
    me = ProcessIdentity.of(pid)
    assert me is not None and proc.describe(me) == f"sleep (PID {pid}, state S)"


def test_terminate_never_reads_the_command_line(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading /proc/PID/cmdline blocks while the process is stuck in the kernel with its
    memory lock held: the wait for it to exit must not read it."""
    pid = fakes.spawn()

    def blocked(pid: int) -> list[str]:
        raise AssertionError("read /proc/PID/cmdline")

    monkeypatch.setattr(proc, "cmdline", blocked)
    assert terminate(pid, grace=5) is True  # a bare PID: whatever runs under it now
    assert not fakes.running(pid)


def test_terminate_of_nothing_is_done() -> None:
    assert terminate(None) is True


# PID files ----------------------------------------------------------------------------


def test_a_pid_file_vmctl_writes_records_the_identity(fakes: Fakes, tmp_path: Path) -> None:
    me = ProcessIdentity.of(fakes.spawn())
    assert me is not None
    path = tmp_path / "x.pid"
    path.write_text(pid_file_text(me))
    assert read_pid(path) == me.pid and recorded_identity(path) == me
    path.write_text(f"{me.pid}\n")  # an older vmctl's, or a daemon's
    assert read_pid(path) == me.pid and recorded_identity(path) is None
    for junk in ("", "x\n", "-3\n"):
        path.write_text(junk)
        assert read_pid(path) is None
    assert read_pid(tmp_path / "none.pid") is None


def test_a_daemons_pid_file_names_the_daemon_that_wrote_it(fakes: Fakes, tmp_path: Path) -> None:
    pid_file = tmp_path / "virtlogd.pid"
    pid = fakes.spawn("virtlogd", pid_file)
    owner = pid_file_owner(pid_file, ("virtlogd",))
    assert owner is not None and owner.pid == pid and owner.matches()
    assert pid_alive(pid_file, "virtlogd") == pid
    assert pid_file_owner(pid_file, ("libvirtd",)) is None  # another program under that PID


def test_a_pid_file_from_before_this_boot_names_nothing(fakes: Fakes, tmp_path: Path) -> None:
    """The runtime's directory is not a tmpfs: after a reboot its PID files name whatever
    got those PIDs now, which may even be the same program."""
    pid_file = tmp_path / "libvirtd.pid"
    fakes.spawn("libvirtd", pid_file)
    before_boot = proc.boot_time() - 3600
    os.utime(pid_file, (before_boot, before_boot))
    assert pid_alive(pid_file, "libvirtd") is None


def test_a_pid_file_written_before_its_process_started_names_nothing(fakes: Fakes, tmp_path: Path) -> None:
    """The daemon that wrote it exited and a later process got its PID: it started after
    the file was written, which the writer cannot have."""
    pid_file = tmp_path / "libvirtd.pid"
    pid = fakes.spawn("libvirtd", pid_file)
    me = ProcessIdentity.of(pid)
    assert me is not None and written_by(pid_file, me)
    earlier = me.started() - 30
    assert earlier > proc.boot_time(), "the host booted less than 30 s ago"
    os.utime(pid_file, (earlier, earlier))
    assert not written_by(pid_file, me)
    assert pid_alive(pid_file, "libvirtd") is None


def test_a_pid_file_of_an_exited_process_names_nothing(fakes: Fakes, tmp_path: Path) -> None:
    pid_file = tmp_path / "dnsmasq.pid"
    pid = fakes.spawn("dnsmasq", pid_file)
    assert pid_alive(pid_file, "dnsmasq") == pid
    os.kill(pid, 9)
    fakes.procs[-1].wait(5)
    assert pid_alive(pid_file, "dnsmasq") is None


# the forwarder's PID file -----------------------------------------------------------------


def _forwarder_lookalike(fakes: Fakes, name: str) -> int:
    """A process whose command line is a forwarder's of ``name`` (what the old check looked for)."""
    pid = fakes.popen([sys.executable, "-c", "import time; time.sleep(300)", forwarder.MODULE, name])
    time.sleep(0.2)
    return pid


def test_an_old_forwarder_pid_file_names_only_a_process_that_can_have_written_it(
    fakes: Fakes, tmp_path: Path
) -> None:
    files = forwarder.paths(tmp_path, "web")
    pid = _forwarder_lookalike(fakes, "web")
    files["pid"].write_text(str(pid))  # an older vmctl's file: the PID only
    assert forwarder.running_pid(tmp_path, "web") == pid
    me = ProcessIdentity.of(pid)
    assert me is not None
    for when in (me.started() - 30, proc.boot_time() - 3600):  # a reused PID; a file from before a reboot
        os.utime(files["pid"], (when, when))
        assert forwarder.running_pid(tmp_path, "web") is None
        assert forwarder.stop(tmp_path, "web") is False and fakes.running(pid)
        files["pid"].write_text(str(pid))


def test_a_forwarder_pid_file_names_only_the_recorded_process(fakes: Fakes, tmp_path: Path) -> None:
    files = forwarder.paths(tmp_path, "web")
    pid = _forwarder_lookalike(fakes, "web")
    me = ProcessIdentity.of(pid)
    assert me is not None
    files["pid"].write_text(pid_file_text(replace(me, start_ticks=me.start_ticks - 100)))
    assert forwarder.running_pid(tmp_path, "web") is None
    assert forwarder.stop(tmp_path, "web") is False and fakes.running(pid)
    files["pid"].write_text(pid_file_text(me))
    assert forwarder.running_pid(tmp_path, "web") == pid
    assert forwarder.stop(tmp_path, "web") is True and not fakes.running(pid)
    assert not files["pid"].exists()


def test_a_forwarder_started_records_its_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fakeforwarder.py").write_text("import time\ntime.sleep(300)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(forwarder, "MODULE", "fakeforwarder")
    pid = forwarder.start(tmp_path, "web", "qemu:///nowhere")
    stopped = False
    try:
        recorded = recorded_identity(forwarder.paths(tmp_path, "web")["pid"])
        assert recorded is not None and recorded == ProcessIdentity.of(pid)
        assert Path(recorded.exe).name.startswith("python")
        assert forwarder.running_pid(tmp_path, "web") == pid
        stopped = forwarder.stop(tmp_path, "web", grace=5)
        assert stopped and ProcessIdentity.of(pid) is None
    finally:
        if not stopped:  # still our unreaped child: its PID is not anyone else's yet
            os.kill(pid, 9)
            os.waitpid(pid, 0)


def test_a_forwarder_that_outlives_sigkill_is_an_error_and_its_pid_file_stays(
    fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = forwarder.paths(tmp_path, "web")
    pid = _forwarder_lookalike(fakes, "web")
    me = ProcessIdentity.of(pid)
    assert me is not None
    files["pid"].write_text(pid_file_text(me))
    monkeypatch.setattr(forwarder, "terminate", lambda *a, **k: False)
    with pytest.raises(HypervisorError, match=f"still running after SIGKILL: python.* \\(PID {pid}, state S\\)"):
        forwarder.stop(tmp_path, "web")
    assert files["pid"].exists()
