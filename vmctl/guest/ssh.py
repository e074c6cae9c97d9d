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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from .._core import netns
from .._core.proc import CommandResult
from ..errors import HostKeyMismatch, SSHError, WaitTimeout
from .keys import fingerprint

KEEPALIVE = 10  # seconds idle before paramiko sends a keepalive@openssh.com request


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to reach one guest's sshd."""

    machine: str
    address: str
    user: str
    client_key: Path
    host_key: str  # "ssh-ed25519 AAAA..."
    port: int = 22
    netns: str | None = None

    def open_socket(self, timeout: float) -> socket.socket:
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
        """Run ``command`` (a list is quoted with shlex) and return its exit code and output."""
        text = command if isinstance(command, str) else shlex.join(command)
        try:
            chan = self._transport().open_session(timeout=min(timeout, 60))
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"{self.endpoint.machine}: cannot open an SSH session: {e}") from e
        try:
            chan.exec_command(text)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = _collect(chan, time.monotonic() + timeout, text, timeout)
            return CommandResult(text, chan.recv_exit_status(), out, err)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise SSHError(f"{self.endpoint.machine}: SSH command {text!r} failed: {e}") from e
        finally:
            chan.close()

    def put(self, local: Path, remote: str) -> None:
        try:
            with self.client.open_sftp() as sftp:
                sftp.put(str(local), remote)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise SSHError(f"{self.endpoint.machine}: copying {local} to {remote} failed: {e}") from e

    def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` to ``local``; ``local`` is only replaced once the copy is whole."""
        tmp = local.with_name(f".{local.name}.vmctl-part")
        try:
            with self.client.open_sftp() as sftp:
                sftp.get(remote, str(tmp))
            tmp.replace(local)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise SSHError(f"{self.endpoint.machine}: copying {remote} to {local} failed: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)


def _fp(key: paramiko.PKey) -> str:
    return fingerprint(f"{key.get_name()} {key.get_base64()}")


def _collect(chan: paramiko.Channel, deadline: float, text: str, timeout: float) -> tuple[str, str]:
    out, err = bytearray(), bytearray()
    while True:
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            return out.decode(errors="replace"), err.decode(errors="replace")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"command {text!r}", timeout, err.decode(errors="replace")[-200:])
        select.select([chan], [], [], 0.2)
