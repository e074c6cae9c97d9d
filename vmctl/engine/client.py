"""The Docker SDK adapter: the only module that imports ``docker``.

A :class:`docker.DockerClient` for a machine speaks the Engine API through
``docker system dial-stdio`` over vmctl's own SSH connection, so the guest's
pinned host key is enforced and there is no other policy to fall back to.
"""

from __future__ import annotations

from typing import Any

from ..errors import MissingDependency, VmctlError
from ..guest.ssh import SSHConnection

try:
    import docker
    from docker.transport.sshconn import SSHHTTPAdapter
except ImportError as _e:  # pragma: no cover - only without the optional dependency
    raise MissingDependency(
        "the Docker SDK is not installed", hint="pip install 'vmctl[docker]' (or: pip install docker)"
    ) from _e

API_FLOOR = "1.41"  # Docker 20.10, Debian 12's docker.io


class PinnedSSHAdapter(SSHHTTPAdapter):  # type: ignore[misc]
    """docker-py's SSH adapter, on a paramiko client vmctl opened with the pinned key."""

    def __init__(self, guest: SSHConnection, timeout: int = 60) -> None:
        self._ssh = guest
        super().__init__("ssh://vmctl", timeout=timeout, shell_out=True)  # shell_out: build no client of its own
        self.ssh_client = guest.client

    def _connect(self) -> None:
        self._ssh.close()
        self.ssh_client = self._ssh.client


def client(guest: SSHConnection, timeout: int = 60) -> Any:
    """A ``docker.DockerClient`` for the guest behind ``guest``."""
    adapter = PinnedSSHAdapter(guest, timeout)
    sdk = docker.DockerClient(base_url="tcp://vmctl-guest:2375", version=API_FLOOR, timeout=timeout)
    sdk.api.mount("http+docker://ssh", adapter)
    sdk.api.base_url = "http+docker://ssh"
    sdk.api._custom_adapter = adapter
    try:
        sdk.api._version = sdk.api._retrieve_server_version()
    except docker.errors.DockerException as e:
        raise VmctlError(
            f"{guest.endpoint.machine}: the Docker API did not answer: {e}",
            hint=f"'vmctl docker install {guest.endpoint.machine}'",
        ) from e
    return sdk


def local(path: str, timeout: int = 60) -> Any:
    """A ``docker.DockerClient`` for the Engine behind the unix socket at ``path``, checked to answer."""
    sdk = docker.DockerClient(base_url=f"unix://{path}", version=API_FLOOR, timeout=timeout)
    try:
        sdk.ping()
    except docker.errors.DockerException as e:
        sdk.close()
        raise VmctlError(f"the Docker socket {path} did not answer: {e}") from e
    return sdk
