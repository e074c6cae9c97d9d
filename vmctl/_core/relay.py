"""Forwarding a host port to another socket: TCP streams and UDP datagrams.

A :class:`Forward` listens on the host and, for every TCP connection or UDP
peer, opens its own socket with ``dial()`` (which may open it inside a VM's
network namespace) and copies bytes both ways until either side closes.
Threads, not an event loop: a workstation has a handful of forwards, and a
blocked copy never holds up another. Nothing here times out an idle
connection: a forwarded ``docker logs -f`` or database session lasts.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Dial = Callable[[], socket.socket]
BUFFER = 256 * 1024
UDP_IDLE = 120.0  # seconds a UDP peer may stay silent before its upstream socket is closed


def _copy(src: socket.socket, dst: socket.socket) -> None:
    """Bytes from ``src`` to ``dst`` until ``src`` ends; then end ``dst``'s write side."""
    buf = bytearray(BUFFER)
    view = memoryview(buf)
    try:
        while n := src.recv_into(buf):
            dst.sendall(view[:n])
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways between two connected sockets, then close both."""
    back = threading.Thread(target=_copy, args=(b, a), daemon=True)
    back.start()
    _copy(a, b)
    back.join()
    a.close()
    b.close()


def bind(addr: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A socket bound to ``addr:port`` (IPv4 or IPv6); ``OSError`` if it is taken."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT only, not a live listener
        sock.bind((addr, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class Forward:
    """A listening host socket whose connections (or peers) are relayed through ``dial``."""

    addr: str
    port: int
    proto: str  # "tcp" or "udp"
    dial: Dial
    sock: socket.socket | None = None
    error: str = ""
    _peers: dict[tuple[str, int], tuple[socket.socket, list[float]]] = field(default_factory=dict)

    def start(self) -> None:
        """Bind now (so a taken port is an error at once), then serve in a thread."""
        kind = socket.SOCK_STREAM if self.proto == "tcp" else socket.SOCK_DGRAM
        self.sock = bind(self.addr, self.port, kind)
        serve = self._accept if self.proto == "tcp" else self._datagrams
        threading.Thread(target=serve, name=f"forward-{self.port}/{self.proto}", daemon=True).start()

    def stop(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None
        for upstream, _ in list(self._peers.values()):
            upstream.close()
        self._peers.clear()

    def _accept(self) -> None:
        listener = self.sock
        while listener is not None and listener.fileno() >= 0:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        try:
            upstream = self.dial()
        except Exception as e:  # whatever dial raises, the client is closed and the reason kept
            self.error = f"connecting to the guest: {getattr(e, 'strerror', None) or e}"
            client.close()
            return
        self.error = ""
        pipe(client, upstream)

    def _datagrams(self) -> None:
        listener = self.sock
        while listener is not None and listener.fileno() >= 0:
            try:
                data, peer = listener.recvfrom(65535)
            except OSError:
                return
            if peer is None:  # shut down by stop()
                return
            entry = self._peers.get(peer)
            if entry is None:
                try:
                    entry = self._peers[peer] = (self.dial(), [time.monotonic()])
                except Exception as e:  # the serving thread lives on for the next datagram
                    self.error = f"connecting to the guest: {getattr(e, 'strerror', None) or e}"
                    continue
                threading.Thread(target=self._replies, args=(listener, peer, entry[0]), daemon=True).start()
            entry[1][0] = time.monotonic()
            try:
                entry[0].send(data)
            except OSError as e:
                self.error = f"sending to the guest: {e.strerror or e}"

    def _replies(self, listener: socket.socket, peer: tuple[str, int], upstream: socket.socket) -> None:
        """The guest's answers to one UDP peer, until the peer has been idle for UDP_IDLE."""
        while True:
            try:
                upstream.settimeout(5)
                listener.sendto(upstream.recv(65535), peer)
            except TimeoutError:
                last = self._peers.get(peer, (upstream, [0.0]))[1][0]
                if time.monotonic() - last > UDP_IDLE:
                    break
            except OSError:
                break
        self._peers.pop(peer, None)
        upstream.close()
