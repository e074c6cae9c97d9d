"""Which ports a guest's containers publish, followed through Docker's event stream.

Speaks the Engine API over a unix socket (the VM's forwarded docker.sock) with
the standard library's HTTP client: the Docker SDK would cost the forwarder
0.23 s to import and a thread per stream all the same.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

from ..model.ports import PortSpec, Proto

API = "/v1.41"  # Docker 20.10, Debian 12's docker.io: every engine vmctl installs speaks it
EVENTS = {"type": ["container"], "event": ["start", "die"]}


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP to a server on a unix socket (what the docker CLI does for unix:// hosts)."""

    def __init__(self, path: str, timeout: float | None = 10) -> None:
        super().__init__("docker", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def get(path: str, url: str, timeout: float = 10) -> Any:
    """``GET`` an Engine API ``url`` over the unix socket at ``path``, as JSON."""
    conn = UnixHTTPConnection(path, timeout)
    try:
        conn.request("GET", API + url)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"Docker API {url}: HTTP {resp.status} {body[:200].decode(errors='replace')}")
        return json.loads(body)
    finally:
        conn.close()


def published(inspect: dict[str, Any]) -> set[PortSpec]:
    """The ports a container publishes on the guest's external addresses, each as a forward
    of the same port on the host's loopback. A port published on the guest's own loopback
    only is left alone: its owner kept it inside the VM."""
    found = set()
    for key, bindings in ((inspect.get("NetworkSettings") or {}).get("Ports") or {}).items():
        proto: Proto = "udp" if key.endswith("/udp") else "tcp"
        for binding in bindings or []:
            if binding.get("HostIp") in ("127.0.0.1", "::1") or not binding.get("HostPort"):
                continue
            port = int(binding["HostPort"])
            found.add(PortSpec(port, port, proto))
    return found


def _subscribe(path: str) -> tuple[UnixHTTPConnection, http.client.HTTPResponse]:
    """An open stream of container start and die events (the response's headers read)."""
    conn = UnixHTTPConnection(path, timeout=None)
    query = urllib.parse.urlencode({"filters": json.dumps(EVENTS)})
    conn.request("GET", f"{API}/events?{query}")
    resp = conn.getresponse()
    if resp.status != 200:
        conn.close()
        raise OSError(f"Docker API /events: HTTP {resp.status}")
    return conn, resp


def _ports_of(path: str, cid: str) -> set[PortSpec]:
    """A container's published ports; none if it is gone already (``docker run --rm`` of a quick one)."""
    try:
        return published(get(path, f"/containers/{cid}/json"))
    except OSError as e:
        if "HTTP 404" in str(e):
            return set()
        raise


def follow(path: str, stop: threading.Event, changed: Callable[[dict[str, set[PortSpec]]], None]) -> None:
    """Call ``changed`` with every running container's ports now, and again after each
    start or die, until the stream ends (the forwarder reconnects and calls this again).

    The stream is opened before the containers are listed, so a container that
    starts in between is seen by one or the other, never by neither."""
    conn, resp = _subscribe(path)
    try:
        current = {c["Id"]: _ports_of(path, c["Id"]) for c in get(path, "/containers/json")}
        changed(dict(current))
        while not stop.is_set() and (line := resp.readline()):
            if not line.strip():
                continue
            event = json.loads(line)
            cid = event.get("id") or event.get("Actor", {}).get("ID", "")
            if (event.get("Action") or event.get("status")) == "start":
                current[cid] = _ports_of(path, cid)
            else:
                current.pop(cid, None)
            changed(dict(current))
    finally:
        conn.close()
