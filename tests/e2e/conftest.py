"""End-to-end fixtures: a real private runtime (libvirtd + virtlogd in a fresh
network namespace, with its own state directory), shared by the whole session
and torn down at the end, even when tests fail. The image cache is the
default one, so the image `make test` built is reused."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmctl.hypervisor.runtime import Runtime
from vmctl.lab.pool import qemu_pids

VMCTL = [str(Path(sys.executable).parent / "vmctl")]  # the installed command, beside this Python
IMAGE = os.environ.get("VMCTL_TEST_IMAGE", "debian-12")


def vmctl(*args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run the real CLI; with check, fail the test showing its stderr."""
    done = subprocess.run([*VMCTL, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"vmctl {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


def until(check: Callable[[], Any], seconds: float = 30) -> Any:
    """``check()`` once it is truthy, polling for at most ``seconds`` (the VM is emulated)."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def vmctl_json(*args: str) -> Any:
    return json.loads(vmctl(*args, "--json").stdout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``VMCTL_TEST_ORDER=reverse`` runs the tests last to first: a test that needs
    another to have run first (or not to have run) fails then. Every test makes
    sure of what it needs itself (see ``running``), so both orders pass."""
    if os.environ.get("VMCTL_TEST_ORDER") == "reverse":
        items.reverse()


@pytest.fixture(scope="session")
def runtime() -> Iterator[dict[str, Any]]:
    # Not under pytest's tmp_path: that sits in a 0700 directory the guests' QEMU
    # user (libvirt-qemu) cannot pass through; vmctl would refuse it.
    state = Path(tempfile.mkdtemp(prefix="vmctl-e2e-", dir="/var/tmp"))
    saved = {k: os.environ.get(k) for k in ("VMCTL_STATE_DIR", "VMCTL_NETNS", "VMCTL_CONNECT")}
    os.environ["VMCTL_STATE_DIR"] = str(state)
    os.environ["VMCTL_NETNS"] = f"vmctl-test-{os.getpid()}"
    os.environ.pop("VMCTL_CONNECT", None)
    try:
        vmctl("image", "build", IMAGE)
        status = vmctl_json("hypervisor", "start")
        yield status
    finally:
        stopped = vmctl("hypervisor", "stop", check=False)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        left = sorted(p.name for p in (state / "machines").glob("*") if not p.name.endswith(".lock"))
        shutil.rmtree(state, ignore_errors=True)
        # a teardown failure fails the run: a leaked VM or a runtime that would not stop
        assert stopped.returncode == 0, f"vmctl hypervisor stop failed: {stopped.stderr}"
        assert not left, f"the suite left VM files behind: {left}"


DOCK, BAKED_IMAGE = "e2e-dock", "e2e-docker-baked"
DOCK_UP = ["up", DOCK, "--image", IMAGE, "--docker"]
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python(index: int, names: dict[str, str]) -> str:
    """Python block ``index`` of the README's "Python API" section, with the VM
    names in ``names`` (as they appear in quotes) replaced by the tests' own."""
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    code: str = re.findall(r"```python\n(.*?)```", section, re.S)[index]
    for old, new in names.items():
        assert f'"{old}"' in code, f"the README example no longer names {old!r}"
        code = code.replace(f'"{old}"', f'"{new}"')
    return code.replace('"debian-12"', f'"{IMAGE}"')


def run_readme_python(index: int, names: dict[str, str]) -> None:
    exec(compile(readme_python(index, names), "README.md", "exec"), {})


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A $HOME of the tests' own, for ~/.docker (contexts). OpenSSH reads the passwd
    home's ~/.ssh/config, where vmctl adds one Include and drops stale ones."""
    path = tmp_path_factory.mktemp("home")
    saved = os.environ.get("HOME")
    os.environ["HOME"] = str(path)
    yield path
    os.environ["HOME"] = saved or "/root"


def killed_at(argv: list[str], label: str, delay: float) -> str:
    """Run ``vmctl ARGV`` and SIGKILL it ``delay`` seconds after its progress shows
    ``label``; what it printed. Fails the test if it ended before reaching ``label``."""
    proc = subprocess.Popen([*VMCTL, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    printed = []
    for line in proc.stderr:
        printed.append(line)
        if label in line:
            time.sleep(delay)
            proc.kill()
            break
    proc.wait(timeout=60)
    printed.extend(proc.stderr.readlines())
    assert proc.returncode == -9, f"vmctl {' '.join(argv)} ended before '{label}':\n{''.join(printed)}"
    return "".join(printed)


def listed(name: str) -> dict[str, Any] | None:
    """``vmctl ls --json``'s row for ``name``, or None."""
    return next((row for row in vmctl_json("ls") if row["name"] == name), None)


def running(name: str, *up: str) -> dict[str, Any]:
    """``vmctl inspect NAME``, once the VM is running and complete: a test run alone,
    or after one that stopped or removed it, gets it back (``start``, or ``vmctl up
    NAME *UP`` when it is gone). In the usual order this is one ``ls``."""
    row = listed(name)
    if row is None or not row["complete"]:
        assert up, f"VM {name} is gone and this test cannot make it again"
        vmctl("up", name, *up)
    elif row["state"] != "running":
        vmctl("start", name)
    return dict(vmctl_json("inspect", name))


def traces(name: str, mac: str = "") -> list[str]:
    """What of VM ``name`` is left on the host: its domain, files, QEMU process,
    DHCP lease (by ``mac``), mounts. Empty once it is really gone."""
    left = [f"domain {name}"] if listed(name) else []
    left += [f"file {p.name}" for p in (Path(os.environ["VMCTL_STATE_DIR"]) / "machines").glob(f"{name}.*")]
    left += [f"QEMU process {pid}" for pid in qemu_pids(name)]
    if mac:
        leases = subprocess.run(["virsh", "-c", os.environ.get("VMCTL_CONNECT") or Runtime().uri, "net-dhcp-leases",
                                 "vmctl"], capture_output=True, text=True).stdout
        left += [f"lease {line.split()[4]}" for line in leases.splitlines() if mac in line]
    left += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if f"/{name}." in line or f"/{name}/" in line]
    return left


# Where the Docker host's up is killed (SIGKILL), in order, and how long after the phase began.
DOCK_KILLS = [
    ("defining", 0.0),  # while the overlay and seed are made, before or after the domain exists
    ("waiting for an address", 3.0),  # QEMU booting
    ("waiting for SSH", 1.0),
    ("waiting for the guest to be ready", 0.0),  # (the fast profile's: its own units, not cloud-init)
    ("installing Docker", 25.0),  # while packages are pushed or installed
]


@pytest.fixture(scope="session")
def dockerhost(runtime: dict[str, Any], home: Path) -> Iterator[dict[str, Any]]:
    """A VM with Docker installed fresh (offline method), shared by the Docker tests.

    It is made the hard way: its ``up`` is SIGKILLed once in each phase of
    DOCK_KILLS and run again; what ``ls`` said after each kill is kept under
    ``interrupted`` for tests/e2e/test_faults.py, and the last ``up`` finishes it."""
    argv = DOCK_UP
    mac = ""
    try:
        seen = []
        for label, delay in DOCK_KILLS:
            printed = killed_at(argv, label, delay)
            seen.append({"killed_in": label, "printed": printed, "listed": listed(DOCK)})
        done = vmctl(*argv)
        final = vmctl_json("inspect", DOCK)
        mac = final["mac"]
        yield {**final, "timings": final["timings"], "interrupted": seen, "resumed": done.stderr}
    finally:
        vmctl("down", DOCK, check=False)
        assert traces(DOCK, mac) == []


@pytest.fixture
def dock(dockerhost: dict[str, Any]) -> dict[str, Any]:
    """The shared Docker host, running (a bake leaves it stopped): ``inspect``'s view."""
    return running(DOCK, *DOCK_UP[2:])


@pytest.fixture(scope="session")
def baked_image(dockerhost: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The Docker host captured as a base image. The first bake is SIGKILLed while it
    flattens the disk; the second cleans up after it. What the source VM was before
    (its machine-id) and after (``inspect``: the bake leaves it stopped) is kept."""
    argv = ["image", "bake", BAKED_IMAGE, "--from", DOCK]
    try:
        running(DOCK, *DOCK_UP[2:])
        machine_id = vmctl("ssh", DOCK, "--", "cat /etc/machine-id").stdout.strip()
        vmctl("snapshot", "rm", DOCK, "e2e-before-bake", check=False)
        vmctl("snapshot", "create", DOCK, "e2e-before-bake")  # a VM with a snapshot can be baked
        killed_at(argv, "flattening the disk", 1.0)
        again = vmctl(*argv)  # (its progress on stderr says what it cleaned up)
        image = next(row for row in vmctl_json("image", "ls") if row["name"] == BAKED_IMAGE)
        after = vmctl_json("inspect", DOCK)
        after["socket_left"] = Path(after["disk"]).with_suffix(".docker.sock").exists()
        snapshots = vmctl_json("snapshot", "ls", DOCK)
        vmctl("snapshot", "rm", DOCK, "e2e-before-bake")
        yield {**image, "rebaked": again.stderr, "source_machine_id": machine_id, "source_after": after,
               "source_snapshots": snapshots}
    finally:
        vmctl("image", "rm", "--force", BAKED_IMAGE, check=False)
