"""Docker Engine in a guest, installed over SSH: idempotent, and resumable.

Methods (chosen automatically, overridable):

``offline``   the default when the guest has no route out: the host resolves
              the packages against the guest's dpkg status, fetches them from
              the Debian mirror into a shared cache, pushes them over SFTP and
              installs them with dpkg.
``distro``    the guest's own apt and archive (docker.io), for guests with a way out.
``docker-ce`` Docker's official apt repository, for guests with a way out.

Every method runs the same ``prepare`` (finish interrupted dpkg runs, daemon
configuration) and ``finish`` (start, docker group, local check image, a
container that exits 0) steps, so a half-finished install completes on the
next run and a working one is left as it is.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from .._core.paths import cache_dir, debian_mirror
from .._core.progress import NoProgress, Progress
from .._core.render import render
from ..errors import ConfigError, DockerInstallError
from ..images.catalog import check_mirror, check_suite
from .debs import AptRoot

if TYPE_CHECKING:  # engine sits below machines: a Machine is only ever passed in
    from ..machines.machine import Machine

Method = Literal["offline", "distro", "docker-ce"]
METHODS: tuple[str, ...] = ("offline", "distro", "docker-ce")
# busybox-static: the check image is made from it (Docker Hub may be out of reach).
PACKAGES = ["docker.io", "containerd", "runc", "tini", "iptables", "busybox-static"]
# Installed where the guest's suite has them: Debian 13's docker.io only recommends its
# command-line client, packaged apart as docker-cli; Debian 12's docker.io includes it.
OPTIONAL_PACKAGES = ("docker-cli",)
CHECK_IMAGE = "vmctl/busybox:latest"
DOCKER_CE_REPO = "https://download.docker.com/linux"


@dataclass(frozen=True)
class DockerResult:
    machine: str
    method: str
    changed: bool
    version: str
    seconds: float
    packages: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def daemon_json(live_restore: bool = True) -> str:
    """The daemon configuration (validated as JSON)."""
    text = render("docker/daemon.json.j2", live_restore=live_restore)
    return json.dumps(json.loads(text), indent=2, sort_keys=True)


def script(step: str, **context: object) -> str:
    return render(f"docker/{step}.sh.j2", **context)


def steps(method: Method, user: str, live_restore: bool = True, os_id: str = "debian",
          codename: str = "bookworm", offline_dir: str = "/tmp/vmctl-debs") -> list[tuple[str, str]]:
    """(name, script) for each step a method runs as root in the guest."""
    middle: tuple[str, dict[str, object]] = {
        "offline": ("install-offline", {"dir": offline_dir}),
        "distro": ("install-distro", {"packages": PACKAGES, "optional": OPTIONAL_PACKAGES}),
        "docker-ce": (
            "install-docker-ce",
            {"repo": f"{DOCKER_CE_REPO}/{os_id}", "codename": codename, "arch": "amd64"},
        ),
    }[method]  # type: ignore[assignment]
    return [
        ("prepare", script("prepare", daemon_json=daemon_json(live_restore))),
        (middle[0], script(middle[0], **middle[1])),
        ("finish", script("finish", user=user, check_image=CHECK_IMAGE)),
    ]


def _sudo(machine: Machine, step: str, text: str, timeout: float = 1800) -> str:
    result = machine.run("sudo bash -s", stdin=text.encode(), timeout=timeout)
    if result.rc != 0:
        raise DockerInstallError(machine.name, step, result.rc, result.stderr or result.stdout)
    return result.stdout


def is_ready(machine: Machine, live_restore: bool = True) -> str | None:
    """The engine version if Docker is installed, configured as vmctl wants, and answers
    (``docker info``: the engine up, its API served; on the path of every ``up --docker``
    of a baked image, so no container run, 3-7 s under TCG, on top)."""
    want = daemon_json(live_restore)
    check = "cmp -s /etc/docker/daemon.json - && docker info --format '{{.ServerVersion}}'"
    result = machine.run(["sudo", "sh", "-c", check], stdin=(want + "\n").encode(), timeout=120)
    if result.rc != 0:
        return None
    return result.stdout.strip() or "unknown"


def choose_method(machine: Machine) -> Method:
    """``offline`` unless the guest has a default route."""
    routes = machine.run("ip -4 route show default", timeout=60).stdout.strip()
    return "distro" if routes else "offline"


def guest_release(machine: Machine) -> tuple[str, str]:
    text = machine.run("cat /etc/os-release", timeout=60).stdout
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    # the guest's words become host paths and the host's apt sources: checked like a recipe's suite
    os_id = check_suite(fields.get("ID", "debian").strip('"'), "the guest's os-release ID")
    return os_id, check_suite(fields.get("VERSION_CODENAME", "bookworm").strip('"'), "the guest's VERSION_CODENAME")


def install(
    machine: Machine, method: Method | None = None, live_restore: bool = True, progress: Progress = NoProgress()
) -> DockerResult:
    """Make ``machine`` a working Docker host; a ready one is left untouched."""
    started = time.monotonic()
    if method is not None and method not in METHODS:
        raise ConfigError(f"unknown install method {method!r}; use one of {', '.join(METHODS)}")
    progress.phase("checking for a working Docker")
    if version := is_ready(machine, live_restore):
        return DockerResult(machine.name, method or "none", False, version, round(time.monotonic() - started, 2))
    method = method or choose_method(machine)
    os_id, codename = guest_release(machine)
    pushed, output = 0, ""
    for name, text in steps(method, machine.user, live_restore, os_id, codename):
        if name == "install-offline":
            pushed = _push_packages(machine, codename, progress)
            if not pushed:
                continue
        progress.phase(f"docker: {name}")
        output = _sudo(machine, name, text)
    version = output.strip().splitlines()[0] if output.strip() else "unknown"
    machine.close()  # new SSH sessions pick up the docker group
    return DockerResult(machine.name, method, True, version, round(time.monotonic() - started, 2), pushed)


def _push_packages(machine: Machine, codename: str, progress: Progress) -> int:
    """Fetch what the guest lacks on the host and copy it in; returns how many packages."""
    progress.phase("docker: resolving packages against the guest's dpkg status")
    cache = cache_dir()
    status = cache / "apt" / f"status-{machine.name}-{os.getpid()}"
    status.parent.mkdir(parents=True, exist_ok=True)
    try:
        machine.get("/var/lib/dpkg/status", status)
        apt = AptRoot(cache, codename, check_mirror(debian_mirror(), "VMCTL_DEBIAN_MIRROR"))
        files = apt.fetch(status, PACKAGES, OPTIONAL_PACKAGES)
    finally:
        status.unlink(missing_ok=True)
    if not files:
        return 0
    progress.phase(f"docker: pushing {len(files)} packages over SFTP")
    machine.run("rm -rf /tmp/vmctl-debs && mkdir -p /tmp/vmctl-debs", timeout=60)
    total, done = sum(f.stat().st_size for f in files), 0
    for path in files:
        machine.put(path, f"/tmp/vmctl-debs/{path.name}")
        done += path.stat().st_size
        progress.advance(done, total)
    return len(files)
