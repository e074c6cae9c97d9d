"""SSH into guests: the only module that imports ``paramiko``.

Host keys are pinned: the client knows exactly one key for the guest (the
one vmctl generated for it) and rejects any other (``RejectPolicy``).
A connection opens lazily, closes safely twice, and is a context manager.
"""

from __future__ import annotations

import base64
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import paramiko

from .._core import netns
from .._core.proc import CommandResult
from ..errors import HostKeyMismatch, SSHError, WaitTimeout, redact
from ..model.uri import JumpHost
from .keys import fingerprint

KEEPALIVE = 10  # seconds idle before paramiko sends a keepalive@openssh.com request
TRANSFER_STALL = 120  # seconds an SFTP transfer may go without progress before it is given up


class Jump:
    """One SSH connection to a remote hypervisor's own sshd, through which vmctl reaches
    the guests on that host (``direct-tcpip`` channels, as OpenSSH's ProxyJump does).
    The hypervisor's host key must be in its known_hosts (RejectPolicy): the URI's
    ``known_hosts``, else ``~/.ssh/known_hosts``. Opens on first use; thread-safe."""

    def __init__(self, host: JumpHost, connect_timeout: float = 15) -> None:
        self.host, self.connect_timeout = host, connect_timeout
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def open(self, address: str, port: int, timeout: float) -> paramiko.Channel:
        """A channel to ``address:port`` as the hypervisor sees it (its guests' network)."""
        try:
            return self._transport().open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0),
                                                  timeout=timeout)
        except (paramiko.SSHException, OSError) as e:
            raise OSError(f"through {self.host.known_hosts_id}: {e}") from e

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run ``command`` on the hypervisor itself: exit status, stdout and stderr."""
        def failed(e: Exception) -> SSHError:
            return SSHError(f"running {command!r} on hypervisor {self.host.known_hosts_id} failed: {e}",
                            hint="is the host up, and its sshd reachable from here?")

        try:
            channel = self._transport().open_session(timeout=timeout)
        except (paramiko.SSHException, OSError) as e:
            raise failed(e) from e
        err: list[bytes] = []
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            # stderr is read beside stdout: a full stderr window would otherwise stall the command
            reader = threading.Thread(target=lambda: err.append(channel.makefile_stderr("rb").read()), daemon=True)
            reader.start()
            out = channel.makefile("rb").read()
            reader.join(timeout)
            status = channel.recv_exit_status()
        except (paramiko.SSHException, OSError) as e:
            raise failed(e) from e
        finally:
            channel.close()  # (on a timeout too: the command there gets SIGHUP-free EOF and ends)
        return status, out.decode(errors="replace"), b"".join(err).decode(errors="replace")

    def _transport(self) -> paramiko.Transport:
        with self._lock:
            transport = self._client.get_transport() if self._client else None
            if transport is None or not transport.is_active():
                if self._client is not None:
                    self._client.close()
                self._client = self._connect()
                transport = self._client.get_transport()
            assert transport is not None
            return transport

    def _connect(self) -> paramiko.SSHClient:
        h = self.host
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        known = h.known_hosts or Path.home() / ".ssh/known_hosts"
        if known.exists():
            client.load_host_keys(str(known))
        try:
            client.connect(h.host, h.port, h.user, key_filename=str(h.keyfile) if h.keyfile else None,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, allow_agent=h.keyfile is None,
                           look_for_keys=h.keyfile is None)
        except paramiko.BadHostKeyException as e:
            client.close()
            raise SSHError(f"hypervisor {h.known_hosts_id} offered host key {_fp(e.key)}, not the one in {known}",
                           hint="if the host was reinstalled, update its line there (ssh-keygen -R)") from e
        except paramiko.SSHException as e:
            client.close()
            unknown = "not found in known_hosts" in str(e)
            raise SSHError(f"SSH to hypervisor {h.user}@{h.known_hosts_id} failed: {e}",
                           hint=f"add its host key to {known} (ssh-keyscan -p {h.port} {h.host})" if unknown
                           else "check the URI's user, keyfile and the host's sshd") from e
        except OSError as e:
            client.close()
            raise SSHError(f"SSH to hypervisor {h.user}@{h.known_hosts_id} failed: {e}",
                           hint="is the host up, and its sshd reachable from here?") from e
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE)
        return client


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to reach one guest's sshd: directly, inside the runtime's network
    namespace, or through a remote hypervisor's sshd (``jump``)."""

    machine: str
    address: str
    user: str
    client_key: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    port: int = 22
    netns: str | None = None
    jump: Jump | None = None

    def open_socket(self, timeout: float) -> socket.socket | paramiko.Channel:
        if self.jump is not None:
            return self.jump.open(self.address, self.port, timeout)
        return netns.connect(self.address, self.port, timeout, self.netns)


def read_banner(endpoint: Endpoint, timeout: float = 2) -> str:
    """The server's ``SSH-2.0-...`` line, or ``''`` if it is not answering yet."""
    try:
        with endpoint.open_socket(timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return ""
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return line if line.startswith("SSH-") else ""


def _pinned_key(public: str) -> paramiko.PKey:
    kind, blob = public.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


class SSHConnection:
    """An SSH connection to one guest."""

    def __init__(self, endpoint: Endpoint, connect_timeout: float = 15) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self._client: paramiko.SSHClient | None = None

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> paramiko.SSHClient:
        ep = self.endpoint
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        pinned = _pinned_key(ep.host_key)
        host_id = ep.address if ep.port == 22 else f"[{ep.address}]:{ep.port}"
        client.get_host_keys().add(host_id, pinned.get_name(), pinned)
        try:
            sock = ep.open_socket(self.connect_timeout)
            client.connect(
                ep.address, ep.port, ep.user, key_filename=str(ep.client_key), sock=sock,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout, allow_agent=False, look_for_keys=False,
            )
        except paramiko.BadHostKeyException as e:
            client.close()
            raise HostKeyMismatch(ep.machine, fingerprint(ep.host_key), _fp(e.key)) from e
        except (paramiko.SSHException, OSError) as e:
            client.close()
            raise SSHError(f"{ep.machine}: SSH to {ep.user}@{ep.address}:{ep.port} failed: {e}") from e
        transport = client.get_transport()
        if transport is not None:  # an idle connection lasts; a dead guest is noticed
            transport.set_keepalive(KEEPALIVE)
        return client

    def _transport(self) -> paramiko.Transport:
        """The live transport; a connection that died (the guest rebooted) is replaced."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            self.close()
            transport = self.client.get_transport()
        if transport is None:
            raise SSHError(f"{self.endpoint.machine}: SSH connection closed")
        return transport

    def run(self, command: str | Sequence[str], timeout: float = 600, stdin: bytes | None = None) -> CommandResult:
        """Run ``command`` (a list is quoted with shlex) and return its exit code and output.

        ``timeout`` bounds the whole run, sending ``stdin`` included; pass a secret through
        ``stdin``, never in ``command`` (a command line is seen by ``ps`` in the guest).
        Errors quote the command redacted (:func:`~vmctl.errors.redact`)."""
        text = command if isinstance(command, str) else shlex.join(command)
        shown = redact(text)
        deadline = time.monotonic() + timeout
        try:
            chan = self._transport().open_session(timeout=min(timeout, 60))
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"{self.endpoint.machine}: cannot open an SSH session: {e}") from e
        try:
            _answered(chan, lambda: chan.exec_command(text), deadline, f"sshd to start {shown!r}")
            if stdin:
                _send(chan, stdin, deadline, shown, timeout)
            chan.shutdown_write()
            out, err = _collect(chan, deadline, shown, timeout)
            return CommandResult(text, chan.recv_exit_status(), out, err)
        except WaitTimeout:
            self.close()  # the channel may still be stuck in the guest: do not reuse the connection
            raise
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"{self.endpoint.machine}: SSH command {shown!r} failed: {e}") from e
        finally:
            chan.close()

    def _sftp(self, stall: float) -> paramiko.SFTPClient:
        """An SFTP session whose every read and write gives up after ``stall`` seconds."""
        chan = self._transport().open_session(timeout=min(stall, 60))
        try:
            chan.settimeout(stall)
            _answered(chan, lambda: chan.invoke_subsystem("sftp"), time.monotonic() + stall, "sshd to start SFTP")
            return paramiko.SFTPClient(chan)
        except BaseException:
            chan.close()
            raise

    def _transfer(self, what: str, copy: Callable[[paramiko.SFTPClient], object], stall: float) -> None:
        """Run ``copy`` on a new SFTP session: :class:`WaitTimeout` when it makes no progress
        for ``stall`` seconds, :class:`SSHError` when it fails."""
        machine = self.endpoint.machine
        try:
            with self._sftp(stall) as sftp:
                copy(sftp)
        except WaitTimeout:
            self.close()
            raise
        except TimeoutError as e:  # socket.timeout: the channel's own timeout ran out
            self.close()
            raise WaitTimeout(f"{machine}: {what}", stall, "the transfer made no progress",
                              hint=f"is the guest overloaded or out of disk? 'vmctl console {machine}'") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"{machine}: {what} failed: {e}") from e

    def put(self, local: Path, remote: str, stall: float = TRANSFER_STALL) -> None:
        """Copy ``local`` to ``remote``; a transfer stuck for ``stall`` seconds raises :class:`WaitTimeout`."""
        self._transfer(f"copying {local} to {remote}", lambda sftp: sftp.put(str(local), remote), stall)

    def get(self, remote: str, local: Path, stall: float = TRANSFER_STALL) -> None:
        """Copy ``remote`` to ``local``; ``local`` is only replaced once the copy is whole.
        A transfer stuck for ``stall`` seconds raises :class:`WaitTimeout`."""
        tmp = local.with_name(f".{local.name}.vmctl-part")
        try:
            self._transfer(f"copying {remote} to {local}", lambda sftp: sftp.get(remote, str(tmp)), stall)
            tmp.replace(local)
        except OSError as e:
            raise SSHError(f"{self.endpoint.machine}: copying {remote} to {local} failed: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)


def _fp(key: paramiko.PKey) -> str:
    return fingerprint(f"{key.get_name()} {key.get_base64()}")


def _answered(chan: paramiko.Channel, request: Callable[[], object], deadline: float, what: str) -> None:
    """Make a channel request (exec, subsystem), which paramiko awaits without a bound:
    the channel is closed at ``deadline`` if sshd has not answered, and that is a :class:`WaitTimeout`."""
    seconds = max(deadline - time.monotonic(), 0.0)
    expired = threading.Event()

    def expire() -> None:
        expired.set()  # before the close wakes the request up
        with suppress(paramiko.SSHException, OSError, EOFError):  # the connection may be gone by now
            chan.close()

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        request()
    except (paramiko.SSHException, OSError, EOFError) as e:
        if expired.is_set():
            raise WaitTimeout(what, seconds, "no answer from sshd") from e
        raise
    finally:
        timer.cancel()


def _send(chan: paramiko.Channel, data: bytes, deadline: float, shown: str, timeout: float) -> None:
    """Send ``data`` to the command's stdin by ``deadline``; a command that stops reading
    (its window stays full) raises :class:`WaitTimeout` instead of blocking forever."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        chan.settimeout(left)
        try:
            sent = chan.send(bytes(view[:65536]))
        except TimeoutError:
            break
        view = view[sent:]
    chan.settimeout(None)
    if view:
        raise WaitTimeout(f"command {shown!r} to read its input", timeout,
                          f"{len(data) - len(view)} of {len(data)} bytes sent")


def _collect(chan: paramiko.Channel, deadline: float, shown: str, timeout: float) -> tuple[str, str]:
    out, err = bytearray(), bytearray()
    while True:
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            return out.decode(errors="replace"), err.decode(errors="replace")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"command {shown!r}", timeout, redact(err.decode(errors="replace"))[-200:])
        select.select([chan], [], [], 0.2)
