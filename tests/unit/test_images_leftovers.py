"""What a killed build leaves (mounts, loop devices, a running mmdebstrap, gigabytes of
tree) is found and undone by the next build; a tree with a mount left is never removed."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from vmctl._core.proc import CommandResult
from vmctl.errors import ImageError
from vmctl.images import build as build_module
from vmctl.images import leftovers
from vmctl.images.build import build, clear_stale_builds
from vmctl.images.catalog import Build, Cache, new_record
from vmctl.images.leftovers import clear, loops_on, mounts_under, processes_in

RECIPE = Build(suite="bookworm", mirror="http://deb.debian.org/debian", packages=("curl",), kernel_cmdline="ro")


class Phases:
    def __init__(self) -> None:
        self.phases: list[str] = []

    def phase(self, name: str) -> None:
        self.phases.append(name)

    def advance(self, done: int, total: int | None = None) -> None:
        pass


def mountinfo(*points: str) -> str:
    lines = ["22 27 0:21 / /proc rw,relatime - proc proc rw"]
    lines += [f"{100 + i} 27 0:{50 + i} / {p} rw,relatime - tmpfs tmpfs rw" for i, p in enumerate(points)]
    return "\n".join(lines) + "\n"


def test_mounts_under_a_tree_deepest_first_and_not_its_neighbours() -> None:
    tree = Path("/cache/images/.build-x-1")
    text = mountinfo(f"{tree}/mnt", f"{tree}/rootfs/dev", f"{tree}/rootfs/dev/pts", "/cache/images/.build-x-10/mnt",
                     f"{tree}/with\\040space", "/", str(tree))
    assert mounts_under(tree, text) == [
        tree / "rootfs/dev/pts", tree / "rootfs/dev", tree / "with space", tree / "mnt", tree,
    ]


def fake_loops(sys_block: Path, backing: dict[str, str]) -> None:
    for device, path in backing.items():
        (sys_block / device / "loop").mkdir(parents=True)
        (sys_block / device / "loop/backing_file").write_text(path + "\n")
    (sys_block / "vda").mkdir()


def test_loop_devices_on_files_in_the_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leftovers, "SYS_BLOCK", tmp_path)
    fake_loops(tmp_path, {"loop0": "/c/.build-x-1/disk.raw", "loop1": "/c/.build-x-10/disk.raw",
                          "loop2": "/c/.build-x-1/disk.raw (deleted)", "loop3": "/srv/other.img"})
    assert loops_on(Path("/c/.build-x-1")) == ["/dev/loop0", "/dev/loop2"]


class FakeHost:
    """/proc/self/mountinfo and /sys/block of a host, and the commands run on it:
    ``umount`` takes the mount away unless it is ``busy``."""

    def __init__(self, root: Path, mounts: list[Path], loops: dict[str, str], busy: Sequence[Path] = ()) -> None:
        self.proc, self.sys_block = root / "proc", root / "sys"
        (self.proc / "self").mkdir(parents=True)
        fake_loops(self.sys_block, loops)
        self.mounts, self.busy, self.commands = list(mounts), set(busy), []  # type: ignore[var-annotated]
        self._write()

    def _write(self) -> None:
        (self.proc / "self/mountinfo").write_text(mountinfo(*map(str, self.mounts)))

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.commands.append(list(argv))
        point = Path(argv[-1])
        if argv[0] == "umount" and point not in self.busy:
            self.mounts.remove(point)
            self._write()
            return CommandResult(" ".join(argv), 0, "", "")
        return CommandResult(" ".join(argv), 0 if argv[0] == "losetup" else 32, "", "target is busy")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    path = tmp_path / "cache/.build-x-1"
    for sub in ("rootfs/dev", "rootfs/etc", "mnt"):
        (path / sub).mkdir(parents=True)
    (path / "rootfs/etc/shadow").write_text("root:x:")
    (path / "disk.raw").write_bytes(b"\0" * 512)
    return path


def fake_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tree: Path, busy: Sequence[Path] = ()) -> FakeHost:
    host = FakeHost(tmp_path / "host", [tree / "mnt", tree / "rootfs/dev"], {"loop7": str(tree / "disk.raw")}, busy)
    monkeypatch.setattr(leftovers, "PROC", host.proc)
    monkeypatch.setattr(leftovers, "SYS_BLOCK", host.sys_block)
    monkeypatch.setattr(leftovers, "run", host.run)
    return host


def test_clear_unmounts_detaches_then_removes(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fake_host(tmp_path, monkeypatch, tree)
    clear(tree)
    assert host.commands == [
        ["umount", str(tree / "rootfs/dev")], ["umount", str(tree / "mnt")], ["losetup", "--detach", "/dev/loop7"],
    ]
    assert not tree.exists()


def test_a_busy_mount_is_unmounted_lazily(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = fake_host(tmp_path, monkeypatch, tree, busy=[tree / "mnt"])
    with pytest.raises(ImageError, match=f"cannot remove {tree}: {tree / 'mnt'} is still mounted") as e:
        clear(tree)
    assert ["umount", "--lazy", str(tree / "mnt")] in host.commands
    assert "umount --lazy" in e.value.hint
    # a tree with a mount left in it is not removed: rmtree would walk into the mount (the host's /dev, say)
    assert (tree / "rootfs/etc/shadow").exists() and (tree / "mnt").exists()


@pytest.fixture
def fake_mmdebstrap(tmp_path: Path) -> Path:
    script = tmp_path / "bin/mmdebstrap"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport os, subprocess, time\n"
                      "if 'CHILD' in os.environ: print(subprocess.Popen(['sleep', '120']).pid, flush=True)\n"
                      "time.sleep(120)\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def spawn() -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str, cwd: Path | None = None, child: bool = False) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CHILD": "1"} if child else None
        started.append(subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE if child else None))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def wait_for_cmdline(pid: int, word: str) -> None:
    for _ in range(200):
        if word in Path(f"/proc/{pid}/cmdline").read_bytes().decode():
            return
        subprocess.run(["sleep", "0.02"])
    raise AssertionError(f"process {pid} never showed {word}")


def test_clear_stops_an_orphan_mmdebstrap_working_in_the_tree(
    tree: Path, tmp_path: Path, fake_mmdebstrap: Path, spawn: Any
) -> None:
    orphan = spawn(str(fake_mmdebstrap), "--variant=apt", "--", "bookworm", str(tree / "rootfs"), "http://m/debian",
                   child=True)
    assert orphan.stdout is not None
    child = int(orphan.stdout.readline())  # what it started (apt, dpkg): named otherwise, not in the tree
    in_cwd = spawn(str(fake_mmdebstrap), "--variant=apt", cwd=tree)
    elsewhere = spawn(str(fake_mmdebstrap), "--", "bookworm", str(tmp_path / "cache/.build-x-10/rootfs"))
    bystander = spawn(sys.executable, "-c", "import time; time.sleep(120)", str(tree / "rootfs"), cwd=tree)
    for proc in (in_cwd, elsewhere, bystander):
        wait_for_cmdline(proc.pid, "time" if proc is bystander else "mmdebstrap")
    assert processes_in(tree.resolve()) == [*sorted([orphan.pid, in_cwd.pid]), child]
    clear(tree)
    assert orphan.wait(timeout=10) != 0 and in_cwd.wait(timeout=10) != 0
    assert not Path(f"/proc/{child}").exists() or Path(f"/proc/{child}/stat").read_text().split()[2] in "ZX"
    assert elsewhere.poll() is None and bystander.poll() is None  # not mmdebstrap, or not in this tree
    assert not tree.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_clear_unmounts_a_real_mount(tree: Path) -> None:
    dev = tree / "rootfs/dev"
    if subprocess.run(["mount", "-t", "tmpfs", "vmctl-test", str(dev)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (dev / "null").write_text("a file on the mount")
        clear(tree)
        assert not tree.exists()
    finally:
        if dev.exists():
            subprocess.run(["umount", "--lazy", str(dev)], capture_output=True)


@pytest.fixture
def hold_lock() -> Iterator[Any]:
    """Hold a lock file from another process, as a live build holds its image's lock."""
    holders: list[subprocess.Popen[str]] = []

    def hold(path: Path) -> None:
        code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)")
        holders.append(subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True))
        assert holders[-1].stdout is not None and holders[-1].stdout.readline() == "locked\n"

    yield hold
    for proc in holders:
        proc.kill()
        proc.wait()


def test_stale_work_is_what_no_live_process_owns(tmp_path: Path, hold_lock: Any) -> None:
    cache = Cache(tmp_path)
    for name in (".build-x-1", ".build-x-1-2", ".build-other-3", ".build-busy-4", ".build-Bad-5", ".build-x"):
        (cache.root / name).mkdir(parents=True)
    (cache.root / ".bake-x-7.qcow2").write_bytes(b"")
    hold_lock(cache.lock_path("busy"))
    assert [p.name for p in cache.stale_work("build", "x")] == [".build-other-3", ".build-x-1", ".build-x-1-2"]
    assert [p.name for p in cache.stale_work("bake", "y")] == [".bake-x-7.qcow2"]


def test_the_next_build_removes_what_a_killed_one_left_and_says_so(isolated: Path) -> None:
    cache = Cache()
    cache.root.mkdir(parents=True)
    disk = cache.versioned("x", "a" * 64, "qcow2")
    disk.write_bytes(b"qcow2")
    cache.publish(new_record("x", disk, "a" * 64, "download"))  # cached: this build builds nothing
    stale = cache.root / ".build-x-999999"
    (stale / "rootfs/etc").mkdir(parents=True)
    (stale / "disk.raw").write_bytes(b"\0" * 4096)
    progress = Phases()
    assert build("x", RECIPE, "debian", cache, progress).path == str(disk)
    assert not stale.exists()
    assert progress.phases == ["removing .build-x-999999, left by an interrupted build"]


def test_a_build_directory_is_private_from_the_start_and_cleared_after_a_failure(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []

    def fail(workdir: Path, *args: object) -> None:
        modes.append(workdir.stat().st_mode & 0o777)
        (workdir / "rootfs").mkdir()
        raise ImageError("mmdebstrap failed")

    monkeypatch.setattr(build_module, "_build_in", fail)
    cache = Cache()
    with pytest.raises(ImageError, match="mmdebstrap failed"):
        build("x", RECIPE, "debian", cache)
    assert modes == [0o700]  # the tree holds host keys and /etc/shadow until it is configured
    assert [p.name for p in cache.root.iterdir()] == ["x.lock"]


def test_clear_stale_builds_leaves_a_live_build_alone(tmp_path: Path, hold_lock: Any) -> None:
    cache = Cache(tmp_path)
    live = cache.root / ".build-other-1"
    live.mkdir(parents=True)
    hold_lock(cache.lock_path("other"))
    progress = Phases()
    clear_stale_builds(cache, "x", progress)
    assert live.exists() and progress.phases == []


def test_clear_tries_again_when_something_wrote_into_the_tree_meanwhile(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An orphan's late child (apt, dpkg) writes while the tree goes: ENOTEMPTY, then another round."""
    real, calls = shutil.rmtree, []

    def racing(path: Path) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOTEMPTY, "Directory not empty")
        real(path)

    monkeypatch.setattr(shutil, "rmtree", racing)
    monkeypatch.setattr(time, "sleep", lambda _: None)
    clear(tree)
    assert len(calls) == 2 and not tree.exists()
