"""libvirt connection URIs as vmctl reads them: local or remote, and for a remote
``qemu+ssh://`` one, the hypervisor's own sshd through which its guests are reached.

Pure: parsing only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError

# libvirt's SSH transports: OpenSSH's ssh (which reads ~/.ssh/known_hosts and ~/.ssh/config), and
# libssh's and libssh2's (which take the known_hosts and keyfile parameters vmctl reads too)
SSH_SCHEMES = ("qemu+ssh", "qemu+libssh", "qemu+libssh2")


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a libvirt daemon on another machine (``qemu+ssh://host/...``)."""
    return bool(urlsplit(uri).hostname)


def require_local(uri: str, what: str) -> None:
    """A :class:`ConfigError` when ``what`` (a command that works on files the hypervisor
    keeps) is asked of a remote host."""
    if is_remote(uri):
        raise ConfigError(f"{what} needs the hypervisor on this machine, not {uri}",
                          hint="run vmctl on that host, or leave --connect out")


@dataclass(frozen=True)
class JumpHost:
    """A hypervisor's sshd, as a ``qemu+ssh://[USER@]HOST[:PORT]/system`` URI names it
    (with libvirt's own ``keyfile`` and ``known_hosts`` parameters, when given). Its
    host key is checked against ``known_hosts``, as libvirt's ssh does."""

    host: str
    port: int = 22
    user: str = "root"
    keyfile: Path | None = None
    known_hosts: Path | None = None

    @classmethod
    def from_uri(cls, uri: str) -> JumpHost:
        parts = urlsplit(uri)
        if parts.scheme not in SSH_SCHEMES or not parts.hostname:
            raise ConfigError(f"cannot reach the guests of {uri}: only qemu+ssh:// hosts are reached over SSH",
                              hint="use qemu+ssh://[USER@]HOST[:PORT]/system (or qemu+libssh://)")
        try:
            port = parts.port or 22
        except ValueError as e:
            raise ConfigError(f"invalid port in {uri}: {e}") from e
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if query.get("no_verify") == "1":
            raise ConfigError(f"{uri}: no_verify=1 turns off the hypervisor's host key check; vmctl always checks it",
                              hint="add the host's key to known_hosts (ssh-keyscan HOST) and drop no_verify")
        return cls(
            host=parts.hostname, port=port, user=parts.username or "root",
            keyfile=Path(query["keyfile"]) if "keyfile" in query else None,
            known_hosts=Path(query["known_hosts"]) if "known_hosts" in query else None,
        )

    @property
    def known_hosts_id(self) -> str:
        """How known_hosts names this host: ``HOST``, or ``[HOST]:PORT`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"
