"""``python -m vmctl.machines.forwarding --connect URI NAME``: one VM's forwarder process.

Started and stopped by :mod:`vmctl.machines.forwarder`, never by hand. It runs
until SIGTERM, or until the VM is deleted or powered off (as a fresh libvirt
connection sees it: a libvirtd restart is not taken for either); SIGHUP makes
it re-read the VM's record (``vmctl port add|rm``). Everything it does is in
its status file and its log.

- The Docker socket: ``ssh -N -L SOCKET:/var/run/docker.sock`` with the VM's
  pinned-key OpenSSH settings (:mod:`vmctl.machines.sshconfig`), keep-alives
  on; when ssh exits (guest reboot, dropped network) it is started again,
  1 s after a failure and up to 10 s apart while failures repeat.
- Ports: each static forward from the spec, and on a Docker host each port a
  running container publishes (from Docker's event stream, so a ``docker run
  -p`` answers on the host within moments, and stops when the container stops).
"""

from __future__ import annotations

import argparse
import grp
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from .._core import netns
from .._core.locks import replacing
from .._core.poll import wait_for
from .._core.relay import Forward
from ..engine import events
from ..errors import HypervisorError, NoSuchMachine, VmctlError, WaitTimeout
from ..hypervisor.driver import Hypervisor
from ..model.ports import PortSpec, overlapping, parse_all
from . import forwarder, sshconfig
from .host import Host

TICK = 1.0  # seconds between looks at the VM (gone? address changed?)
BACKOFF = (1, 2, 4, 8, 10)  # seconds before the next ssh after 1, 2, 3... failures in a row
LISTEN_TIMEOUT = 60.0  # an ssh that has not made the socket by then is ended and tried again
GONE = ("shutoff", "crashed", "nostate")


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


class Forwarding:
    """The state of one VM's forwards, written to its status file on every change."""

    def __init__(self, host: Host, name: str) -> None:
        self.host, self.name = host, name
        self.files = forwarder.paths(host.dir, name)
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()  # set with stop or reload: the main loop acts at once
        self.lock = threading.Lock()
        self.machine = host.get(name)
        self.docker: dict[str, Any] = {"state": "off"} if not self.machine.spec.docker else {"state": "starting"}
        self.forwards: dict[PortSpec, tuple[Forward, str]] = {}  # spec -> (forward, source)
        self.static: tuple[PortSpec, ...] = ()
        self.dynamic: set[PortSpec] = set()
        self.failed: dict[PortSpec, str] = {}  # static ports that could not listen, and why
        self.reloaded = 0.0
        self.address: str | None = None
        self.ssh: subprocess.Popen[bytes] | None = None

    # status -------------------------------------------------------------------

    def write(self) -> None:
        ports = [{"port": str(spec), "source": source, "state": "listening", "error": fwd.error}
                 for spec, (fwd, source) in sorted(self.forwards.items())]  # error: the last dial's, if it failed
        failed = [{"port": str(p), "source": "static", "state": "error", "error": e}
                  for p, e in self.failed.items()]
        data = {"state": "running", "socket": str(self.files["sock"]) if self.machine.spec.docker else None,
                "docker": self.docker, "static": [str(p) for p in self.static], "ports": ports + failed,
                "reloaded": self.reloaded, "address": self.address}
        with replacing(self.files["json"], 0o600) as f:
            f.write(json.dumps(data, indent=2).encode())

    # ports --------------------------------------------------------------------

    def dial(self, spec: PortSpec) -> Any:
        """How the relay opens its socket to the guest; every failure is an ``OSError`` for it."""
        def open_socket() -> Any:
            try:
                address = self.address or self.machine.ip
                if address is None:
                    raise OSError(f"{self.name} has no address")
                if spec.proto == "udp":
                    return netns.datagram(address, spec.guest_port, self.machine.record.netns)
                return netns.connect(address, spec.guest_port, 10, self.machine.record.netns)
            except VmctlError as e:
                raise OSError(e.message) from e
        return open_socket

    def apply(self) -> None:
        """Listen on exactly the wanted ports: static ones first, then containers' that do not clash."""
        with self.lock:
            wanted: dict[PortSpec, str] = dict.fromkeys(self.static, "static")
            taken = list(self.static)
            for port in sorted(self.dynamic):
                if not overlapping([port], taken):
                    wanted[port] = "docker"
                    taken.append(port)
            for spec in [s for s in self.forwards if s not in wanted]:
                self.forwards.pop(spec)[0].stop()
                log(f"port {spec}: closed")
            self.failed = {}
            for spec, source in wanted.items():
                if spec not in self.forwards:
                    self._open(spec, source)
            self.write()

    def _open(self, spec: PortSpec, source: str) -> None:
        fwd = Forward(spec.host_addr, spec.host_port, spec.proto, self.dial(spec))
        try:
            fwd.start()
        except OSError as e:
            reason = f"{spec.family_addr}:{spec.host_port}/{spec.proto} on the host: {e.strerror or e}"
            log(f"port {spec} ({source}): {reason}")
            if source == "static":
                self.failed[spec] = reason
            return
        self.forwards[spec] = (fwd, source)
        log(f"port {spec} ({source}): listening")

    def containers_changed(self, published: dict[str, set[PortSpec]]) -> None:
        self.dynamic = set().union(*published.values()) if published else set()
        self.apply()

    # the Docker socket ------------------------------------------------------------

    def ssh_argv(self) -> list[str]:
        sock = self.files["sock"]
        # made 0600; widened to 0660 only once its group is docker (see _share)
        forward = ["-N", "-T", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
                   "-o", "StreamLocalBindMask=0177", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                   "-L", f"{sock}:/var/run/docker.sock"]
        argv = sshconfig.ssh_argv(self.machine, [])
        return [argv[0], *forward, *argv[1:]]

    def docker_loop(self) -> None:
        failures = 0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                reason = self._one_ssh()
            except Exception as e:  # the thread must live on, and say why it failed
                reason = f"{type(e).__name__}: {e}"
            if self.stop.is_set():
                return
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            wait = BACKOFF[min(failures, len(BACKOFF)) - 1] if failures else 1
            # a connection that worked for a while is "reconnecting"; one that never came up is an error
            self._docker_state("reconnecting" if not failures else "error", f"{reason}; again in {wait}s")
            log(f"docker socket: {reason}; again in {wait}s")
            self.stop.wait(wait)

    def _one_ssh(self) -> str:
        """Run one ssh forward until it ends; returns why it ended."""
        try:
            self.machine.close()
            self.machine = self.host.get(self.name)  # the record and address as they are now
            self.address = self.machine.ip
            argv = self.ssh_argv()
        except VmctlError as e:
            return e.message
        self.files["sock"].unlink(missing_ok=True)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.ssh = proc
        watcher = threading.Thread(target=self._when_listening, args=(proc,), daemon=True)
        watcher.start()
        _, err = proc.communicate()
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        return f"ssh exited {proc.returncode}" + (f": {lines[-1]}" if lines else "")

    def _when_listening(self, proc: subprocess.Popen[bytes]) -> None:
        """Once ssh's socket appears: give it the docker group, then follow the containers."""
        sock = self.files["sock"]
        try:
            wait_for("ssh to make the Docker socket", lambda _: proc.poll() is not None or sock.exists(),
                     LISTEN_TIMEOUT, interval=0.05)
        except WaitTimeout:
            log(f"docker socket: no socket after {LISTEN_TIMEOUT:.0f}s; ending this ssh")
            proc.terminate()
            return
        if proc.poll() is not None:
            return
        _share(sock)
        while proc.poll() is None and not self.stop.is_set():
            try:
                events.get(str(sock), "/version", timeout=30)
                self._docker_state("ok", "")
                events.follow(str(sock), self.stop, self.containers_changed)
            except (OSError, ValueError, http.client.HTTPException) as e:
                self._docker_state("error", f"the Docker API did not answer: {e}")
                self.stop.wait(2)

    def _docker_state(self, state: str, error: str) -> None:
        self.docker = {"state": state, "error": error}
        with self.lock:
            self.write()

    # the process --------------------------------------------------------------

    def signal(self, event: threading.Event) -> None:
        """A signal's work is done by the main loop, woken at once."""
        event.set()
        self.wake.set()

    def read_spec(self) -> None:
        self.machine = self.host.get(self.name)
        self.static = parse_all(self.machine.spec.ports)
        self.reloaded = time.monotonic()
        self.apply()

    def run(self) -> int:
        try:
            self.read_spec()
            if self.machine.spec.docker:
                threading.Thread(target=self.docker_loop, name="docker-socket", daemon=True).start()
            while not self.stop.is_set():
                self.wake.wait(TICK)
                self.wake.clear()
                if self.reload.is_set() and not self.stop.is_set():
                    self.reload.clear()
                    log("reloading the VM's record")
                    self.read_spec()
                if not self.stop.is_set() and (why := self.gone()):
                    log(f"{self.name} {why}: exiting")
                    break
        finally:
            self.shutdown()
        return 0

    def gone(self) -> str:
        """Why the forwarder has nothing left to forward ('is gone', 'is shutoff'), or ''.
        Asked of a fresh connection when the usual one says so: libvirtd may just have restarted."""
        with suppress(VmctlError):
            if self.host.hv.state(self.name) not in GONE:
                return ""
        try:
            with Hypervisor(self.host.uri) as hv:
                state = hv.state(self.name)
        except NoSuchMachine:
            return "is gone"
        except HypervisorError as e:
            log(f"libvirt: {e.message}; forwarding on")
            return ""
        return f"is {state}" if state in GONE else ""

    def shutdown(self) -> None:
        self.stop.set()
        if self.ssh is not None and self.ssh.poll() is None:
            self.ssh.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.ssh.wait(5)
        with self.lock:
            for fwd, _ in self.forwards.values():
                fwd.stop()
            self.forwards.clear()
        for kind in ("sock", "json", "pid"):
            self.files[kind].unlink(missing_ok=True)


def _share(sock: Path) -> None:
    """The socket to group docker and mode 0660 when that group exists; else it stays 0600."""
    try:
        os.chown(sock, -1, grp.getgrnam("docker").gr_gid)
    except (KeyError, OSError):
        return
    os.chmod(sock, 0o660)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {forwarder.MODULE}")
    parser.add_argument("--connect", required=True)
    parser.add_argument("name")
    args = parser.parse_args(argv)
    # Signals first: a SIGHUP (reload) that came while it connected must not kill it.
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: early.append(signum))
    try:
        with Host(args.connect) as host:
            state = Forwarding(host, args.name)  # its PID file is written by whoever started it
            handlers = {signal.SIGTERM: state.stop, signal.SIGINT: state.stop, signal.SIGHUP: state.reload}

            def handle(signum: int, _frame: object) -> None:
                state.signal(handlers[signal.Signals(signum)])

            for sig in handlers:
                signal.signal(sig, handle)
            for signum in early:
                handle(signum, None)
            log(f"forwarder of {args.name} started (pid {os.getpid()})")
            return state.run()
    except VmctlError as e:
        log(f"error: {e.message}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
