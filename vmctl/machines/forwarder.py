"""The host side of a VM, kept up in the background: its Docker socket and its ports.

One forwarder process per VM (``python -m vmctl.machines.forwarding``) holds:

- for a Docker host, a unix socket in the machines directory that reaches the
  guest's ``/var/run/docker.sock`` over one long-lived OpenSSH connection with
  the pinned host key (re-made when it drops: a guest reboot, a network blip);
- the VM's published ports (its spec's ``ports``), and on a Docker host the ports
  its containers publish, each listening on the host and relayed into the VM.

It outlives the command that started it. This module starts it, stops it by its
PID, and reads the status file it keeps (``NAME.forward.json``): ``ls``/``inspect``
show it, so a forwarder that cannot do its job says why instead of failing silently.
The PID file (``NAME.forward.pid``) holds the PID, then the process's identity
taken at start (:class:`~vmctl._core.proc.ProcessIdentity`): the PID counts as
the forwarder only while it is still that very process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .._core.locks import file_lock, replacing
from .._core.poll import Look, wait_for
from .._core.proc import (
    ProcessIdentity,
    cmdline,
    describe,
    pid_file_text,
    read_pid,
    recorded_identity,
    terminate,
    written_by,
)
from ..errors import HypervisorError

MODULE = "vmctl.machines.forwarding"
SUFFIXES = ("forward.pid", "forward.json", "forward.log", "forward.lock", "docker.sock")
START_TIMEOUT = 60.0  # an SSH handshake with an emulated guest takes seconds; a cold one more


def paths(directory: Path, name: str) -> dict[str, Path]:
    """The forwarder's files for VM ``name``: pid, status, log, and the Docker socket."""
    return {suffix.split(".")[-1]: directory / f"{name}.{suffix}" for suffix in SUFFIXES}


def socket_path(directory: Path, name: str) -> Path:
    return paths(directory, name)["sock"]


def running_pid(directory: Path, name: str) -> int | None:
    """The forwarder's PID if that process is alive and is the forwarder of ``name``
    (a PID file can outlive its process, and the PID be reused)."""
    process = _process(directory, name)
    return process.pid if process else None


def _process(directory: Path, name: str) -> ProcessIdentity | None:
    """The forwarder of ``name``, if it runs: the process its PID file records, still that
    very process. A PID file with no identity (an older vmctl's) names the forwarder when
    that process runs the forwarder module for ``name`` and had started when the file was written."""
    pid_file = paths(directory, name)["pid"]
    if (pid := read_pid(pid_file)) is None:
        return None
    if (recorded := recorded_identity(pid_file)) is not None:
        return recorded if recorded.pid == pid and recorded.matches() else None
    process = ProcessIdentity.of(pid)
    if process is None or not written_by(pid_file, process):
        return None
    argv = cmdline(pid)
    return process if MODULE in argv and name in argv else None


def status(directory: Path, name: str) -> dict[str, Any]:
    """What the forwarder last reported, or ``{"state": "stopped"}``."""
    pid = running_pid(directory, name)
    if pid is None:
        return {"state": "stopped"}
    try:
        data: dict[str, Any] = json.loads(paths(directory, name)["json"].read_text())
    except (OSError, ValueError):
        data = {"state": "starting"}
    return {**data, "pid": pid}


def start(directory: Path, name: str, uri: str) -> int:
    """Start the forwarder of ``name`` (or tell a running one to re-read the VM); returns its PID.
    Under a lock of its own, so two commands at once start one forwarder, not two."""
    files = paths(directory, name)
    with file_lock(files["lock"]):
        if (pid := running_pid(directory, name)) is not None:
            with suppress(ProcessLookupError):  # it may exit just now: then a new one is started
                os.kill(pid, signal.SIGHUP)
                return pid
        files["json"].unlink(missing_ok=True)
        with open(files["log"], "ab") as log:
            os.chmod(files["log"], 0o600)
            # -P and cwd /: nothing is imported from, or kept busy in, the caller's directory;
            # a session of its own: it outlives this command and its terminal
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", MODULE, "--connect", uri, name], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, cwd="/", start_new_session=True, close_fds=True,
            )
        # Popen returned after the exec: this is the forwarder's own executable and start time
        identity = ProcessIdentity.of(proc.pid)
        with replacing(files["pid"], 0o600) as f:
            f.write((pid_file_text(identity) if identity else f"{proc.pid}\n").encode())
        return proc.pid


def ensure(directory: Path, name: str, uri: str, ports: tuple[str, ...], docker: bool,
           timeout: float = START_TIMEOUT) -> dict[str, Any]:
    """Start (or reload) the forwarder and wait until it reports on ``ports`` and,
    for a Docker host, on the Docker socket; returns its status. A port or socket
    that failed is in the status, for the caller to judge."""
    started = time.monotonic()
    pid = start(directory, name, uri)

    def settled(look: Look) -> dict[str, Any] | None:
        now = status(directory, name)
        look.seen = json.dumps({k: now.get(k) for k in ("state", "docker", "ports")})
        if _exited(pid):
            raise HypervisorError(f"the forwarder of {name} exited: {_log_tail(directory, name)}",
                                  hint=f"see {paths(directory, name)['log']}")
        fresh = now.get("reloaded", 0) >= started - 1  # the status answers this start or reload
        # settled: the socket answers, or one attempt failed (it keeps trying; the status says why)
        docker_done = not docker or now.get("docker", {}).get("state") in ("ok", "error")
        return now if fresh and sorted(now.get("static", [])) == sorted(ports) and docker_done else None

    return wait_for(f"the forwarder of {name}", settled, timeout, interval=0.1)


def _exited(pid: int) -> bool:
    with suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    return not Path(f"/proc/{pid}").exists()


def _log_tail(directory: Path, name: str) -> str:
    try:
        lines = [ln for ln in paths(directory, name)["log"].read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def stop(directory: Path, name: str, grace: float = 10) -> bool:
    """Stop the forwarder of ``name`` by its PID; True if one was running. Its files go too
    (the log stays, for ``down`` to remove with the VM). One that outlives SIGKILL (stuck
    in the kernel) is a :class:`HypervisorError`, and its PID file stays for the next stop."""
    process = _process(directory, name)
    if process is not None:
        # on SIGKILL its whole session: the forwarder and its ssh
        if not terminate(process, grace, group=True):
            raise HypervisorError(
                f"the forwarder of {name} is still running after SIGKILL: {describe(process)}",
                hint="state D is a process stuck in the kernel; stop it again once it is gone",
            )
        _exited(process.pid)
    files = paths(directory, name)
    for kind in ("pid", "json", "sock"):
        files[kind].unlink(missing_ok=True)
    return process is not None


def stop_all(directory: Path, uri: str) -> list[str]:
    """Stop every forwarder in ``directory`` of a VM on libvirt ``uri``; returns the VMs' names."""
    names = [p.name[: -len(".forward.pid")] for p in directory.glob("*.forward.pid")]
    return [name for name in names if _uri(directory, name) == uri and stop(directory, name)]


def _uri(directory: Path, name: str) -> str | None:
    """The libvirt URI a running forwarder of ``name`` was started with."""
    if (pid := running_pid(directory, name)) is None:
        return None
    argv = cmdline(pid)
    return argv[argv.index("--connect") + 1] if "--connect" in argv[:-1] else None
