"""Container images without a registry: tiny local images and loading tars into guests."""

from __future__ import annotations

import io
import secrets
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .._core.locks import replacing
from .._core.paths import cache_dir
from .._core.proc import run
from ..errors import ConfigError, VmctlError

if TYPE_CHECKING:  # engine sits below machines: a Machine is only ever passed in
    from ..machines.machine import Machine

BUSYBOX_APPLETS = (
    "sh",
    "true",
    "false",
    "echo",
    "cat",
    "ls",
    "sleep",
    "hostname",
    "uname",
    "date",
    "env",
    "wget",
    "nc",
)


def tar_kind(path: Path) -> str:
    """``image`` for a ``docker save`` archive, ``rootfs`` for a root filesystem tar."""
    try:
        with tarfile.open(path) as tar:
            names = {n.lstrip("./") for n in tar.getnames()}
    except (tarfile.TarError, OSError) as e:
        raise ConfigError(f"{path} is not a readable tar archive: {e}") from e
    return "image" if {"manifest.json", "index.json"} & names else "rootfs"


def busybox_rootfs(out: Path) -> Path:
    """A root filesystem tar holding Debian's static busybox (a ~2 MB image), at ``out``."""
    with replacing(out) as f:
        _busybox_tar(f)
    return out


def _busybox_tar(f: BinaryIO) -> None:
    with tempfile.TemporaryDirectory(prefix="vmctl-busybox-") as tmp:
        run(
            ["apt-get", "download", "busybox-static"],
            what="apt-get download busybox-static",
            timeout=300,
            cwd=Path(tmp),
        )
        deb = next(Path(tmp).glob("busybox-static_*.deb"))
        run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], what="dpkg-deb -x")
        binary = (Path(tmp) / "x/bin/busybox").read_bytes()
    with tarfile.open(fileobj=f, mode="w") as tar:
        _add(tar, "bin", b"", tarfile.DIRTYPE, 0o755)
        _add(tar, "bin/busybox", binary, tarfile.REGTYPE, 0o755)
        for applet in BUSYBOX_APPLETS:
            _add(tar, f"bin/{applet}", b"", tarfile.SYMTYPE, 0o777, link="busybox")
        for directory in ("tmp", "proc", "sys", "dev", "etc"):
            _add(tar, directory, b"", tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755)


def _add(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes, mode: int, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, len(data), link
    tar.addfile(info, io.BytesIO(data) if data else None)


def load(machine: Machine, archive: Path, tag: str | None = None) -> list[str]:
    """Load ``archive`` into the guest's Docker: ``docker load`` or, for a rootfs, ``docker import``."""
    if not archive.is_file():
        raise ConfigError(f"{archive} is not a file")
    kind = tar_kind(archive)
    if kind == "rootfs" and not tag:
        raise ConfigError(f"{archive} is a root filesystem tar, so it needs a name", hint="add --tag NAME:TAG")
    remote = f"/tmp/vmctl-load-{secrets.token_hex(4)}.tar"
    machine.put(archive, remote)
    try:
        if kind == "image":
            result = machine.run(["sudo", "docker", "load", "-i", remote], timeout=1800)
            loaded = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("Loaded image")]
            if tag and result.rc == 0 and loaded:
                result = machine.run(["sudo", "docker", "tag", loaded[0], tag], timeout=120)
                loaded.append(tag)
        else:
            result = machine.run(["sudo", "docker", "import", remote, str(tag)], timeout=1800)
            loaded = [str(tag)]
    finally:
        machine.run(["rm", "-f", remote], timeout=60)
    if result.rc != 0:
        raise VmctlError(
            f"{machine.name}: loading {archive.name} failed: {result.tail()}",
            hint=f"is Docker installed? 'vmctl docker install {machine.name}'",
        )
    return loaded


# The host's own Docker Engine, for the boot lab -------------------------------

HOST_LAB_IMAGE = "vmctl/busybox:lab"


def host_engine() -> tuple[str | None, str]:
    """(the host engine's version, '') if a Docker Engine answers here, else (None, why not)."""
    try:
        result = run(
            ["docker", "version", "--format", "{{.Server.Version}}"], what="docker version", timeout=20, check=False
        )
    except VmctlError as e:
        return None, e.message
    if not result.ok:
        return None, f"no Docker Engine answers on this host: {result.tail(1) or 'docker version failed'}"
    return result.stdout.strip(), ""


def busybox_cached() -> Path:
    """The busybox root filesystem tar, made once and kept in vmctl's cache."""
    out = cache_dir() / "containers" / "busybox-rootfs.tar"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        busybox_rootfs(out)
    return out


def time_on_host(n: int) -> list[float]:
    """Seconds for each of ``n`` ``docker run --rm`` of a local busybox image on the host's engine."""
    if not run(["docker", "image", "inspect", HOST_LAB_IMAGE], what="docker image inspect", check=False).ok:
        run(
            ["docker", "import", "-c", 'CMD ["/bin/sh"]', str(busybox_cached()), HOST_LAB_IMAGE],
            what=f"docker import {HOST_LAB_IMAGE}",
            timeout=300,
        )
    times = []
    for _ in range(n):
        started = time.monotonic()
        run(
            ["docker", "run", "--rm", "--network", "none", HOST_LAB_IMAGE, "true"],
            what=f"docker run --rm {HOST_LAB_IMAGE}",
            timeout=120,
        )
        times.append(round(time.monotonic() - started, 3))
    return times
