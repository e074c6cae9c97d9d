"""Shared folders (``vmctl up --mount``): host files in the guest and in its containers,
guest files on the host, read-only shares, the mounts back after a restart, and bad
input refused before anything is made. One VM at a time: each boot costs a minute or more."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import vmctl as vmctl_api

from .conftest import BAKED_IMAGE, IMAGE, vmctl, vmctl_json

DOCKER_VM, STOCK_VM, NEVER_VM = "e2e-mounts", "e2e-mounts-stock", "e2e-mounts-never"
SETTINGS = "/srv/settings"  # the read-only share's guest directory


def _leftovers(name: str) -> list[str]:
    """The domain and the files (bar the lock) of VM ``name`` that exist."""
    files = [p.name for p in (Path(os.environ["VMCTL_STATE_DIR"]) / "machines").glob(f"{name}.*")
             if p.suffix != ".lock"]
    with vmctl_api.connect() as host:
        return files + [d for d in host.hv.domains() if d == name]


def _ssh(name: str, command: str) -> str:
    return vmctl("ssh", name, "--", command).stdout


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("{tmp}/absent:/data", "mount '{tmp}/absent:/data': host directory {tmp}/absent does not exist"),
        ("relative/dir", "invalid mount 'relative/dir': host directory 'relative/dir' is not an absolute path"),
        ("{tmp}:/etc", "invalid mount '{tmp}:/etc': a share on /etc would hide /etc"),
        ("{tmp}:/data:rx", "invalid mount '{tmp}:/data:rx': 'rx' is neither an absolute GUESTDIR nor ro or rw "
                           "(paths with ':' cannot be shared)"),
    ],
)
def test_a_bad_mount_is_one_line_at_once_and_nothing_is_made(
    runtime: dict[str, Any], tmp_path: Path, mount: str, message: str
) -> None:
    started = time.monotonic()
    done = vmctl("up", NEVER_VM, "--image", IMAGE, "--mount", mount.format(tmp=tmp_path), check=False, timeout=60)
    took = time.monotonic() - started
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and errors == [f"error: {message.format(tmp=tmp_path)}"], done.stderr
    assert _leftovers(NEVER_VM) == []
    print(f"\n{took:.2f}s to refuse --mount {mount}")  # the time goes to docs, not into a test


def test_a_stock_vm_from_the_plain_image_reads_a_host_file(runtime: dict[str, Any], tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # pytest makes it 0700: the guest's login user could not enter it
    (tmp_path / "hello.txt").write_text("hello from the host\n")
    try:
        vmctl("up", STOCK_VM, "--image", IMAGE, "--profile", "stock", "--mount", f"{tmp_path}:/mnt/host")
        assert _ssh(STOCK_VM, "cat /mnt/host/hello.txt") == "hello from the host\n"
    finally:
        vmctl("down", STOCK_VM, check=False)


# A Docker host from the baked image, fast profile: a read-write share at the host's own
# path (under /tmp, which the guest empties at boot: the share must survive that) and a
# read-only one.


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rw, ro = tmp_path_factory.mktemp("share-rw"), tmp_path_factory.mktemp("share-ro")
    # virtiofs keeps numeric owners and modes: the guest's login user reads the share as
    # "others" (pytest made both 0700) and, in the read-write one, writes too
    rw.chmod(0o777)
    ro.chmod(0o755)
    (rw / "from-host.txt").write_text("written on the host\n")
    (ro / "settings.txt").write_text("read-only settings\n")
    return {"rw": rw, "ro": ro}


@pytest.fixture(scope="module")
def docker_vm(baked_image: dict[str, Any], folders: dict[str, Path]) -> Iterator[dict[str, Any]]:
    try:
        yield vmctl_json("up", DOCKER_VM, "--image", BAKED_IMAGE, "--profile", "fast", "--docker",
                         "--mount", str(folders["rw"]), "--mount", f"{folders['ro']}:{SETTINGS}:ro")
    finally:
        vmctl("down", DOCKER_VM, check=False)


def test_the_record_keeps_the_mounts_and_the_same_up_changes_nothing(
    docker_vm: dict[str, Any], folders: dict[str, Path]
) -> None:
    expected = [f"{folders['rw']}:{folders['rw']}", f"{folders['ro']}:{SETTINGS}:ro"]
    assert docker_vm["spec"]["mounts"] == expected
    assert vmctl_json("inspect", DOCKER_VM)["spec"]["mounts"] == expected
    again = vmctl("up", DOCKER_VM, "--image", BAKED_IMAGE, "--profile", "fast", "--docker",
                  "--mount", f"{folders['rw']}/", "--mount", f"{folders['ro']}:{SETTINGS}/:ro", check=False)
    assert again.returncode == 0, again.stderr


def test_a_host_file_is_read_in_the_guest_and_in_a_container(
    docker_vm: dict[str, Any], folders: dict[str, Path]
) -> None:
    rw = folders["rw"]
    assert _ssh(DOCKER_VM, f"cat {rw}/from-host.txt {SETTINGS}/settings.txt") == (
        "written on the host\nread-only settings\n")
    out = _ssh(DOCKER_VM, f"docker run --rm --network none -v {rw}:/data vmctl/busybox:latest cat /data/from-host.txt")
    assert out == "written on the host\n"


def test_files_written_in_the_guest_and_by_a_container_are_on_the_host(
    docker_vm: dict[str, Any], folders: dict[str, Path]
) -> None:
    rw = folders["rw"]
    uid = int(_ssh(DOCKER_VM, f"echo from the guest > {rw}/from-guest.txt && id -u"))
    _ssh(DOCKER_VM, f"docker run --rm --network none -v {rw}:/data vmctl/busybox:latest "
                    "sh -c 'echo from a container > /data/from-container.txt'")
    assert (rw / "from-guest.txt").read_text() == "from the guest\n"
    assert (rw / "from-guest.txt").stat().st_uid == uid  # the guest user's numeric owner
    assert (rw / "from-container.txt").read_text() == "from a container\n"


def test_the_read_only_share_refuses_writes_even_from_root(
    docker_vm: dict[str, Any], folders: dict[str, Path]
) -> None:
    done = vmctl("ssh", DOCKER_VM, "--", f"sudo touch {SETTINGS}/new.txt", check=False)
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    assert sorted(p.name for p in folders["ro"].iterdir()) == ["settings.txt"]


def test_the_mounts_come_back_after_a_restart(docker_vm: dict[str, Any], folders: dict[str, Path]) -> None:
    _ssh(DOCKER_VM, f"echo kept > {folders['rw']}/before-restart.txt")
    vmctl("restart", DOCKER_VM)
    (folders["rw"] / "after-restart.txt").write_text("still shared\n")
    mounts = sorted(_ssh(DOCKER_VM, "findmnt -rn -t virtiofs -o SOURCE,TARGET,OPTIONS").splitlines())
    assert [line.split()[:2] for line in mounts] == [["vmctl0", str(folders["rw"])], ["vmctl1", SETTINGS]]
    assert mounts[1].split()[2].startswith("ro,")
    assert _ssh(DOCKER_VM, f"cat {folders['rw']}/after-restart.txt") == "still shared\n"
    # the guest empties /tmp at boot; the share under it (the host's files) is left alone
    assert {"from-host.txt", "before-restart.txt"} <= {p.name for p in folders["rw"].iterdir()}
    assert (folders["rw"] / "before-restart.txt").read_text() == "kept\n"
