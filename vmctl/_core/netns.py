"""Sockets inside a network namespace, opened from the root namespace.

A thread that calls ``setns(2)`` on ``/run/netns/NAME`` moves into that
namespace alone; a socket it opens stays in the namespace and can be used
from any thread. Each connection gets a fresh short-lived thread, so no
thread of the caller's ever changes namespace.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import HypervisorError

CLONE_NEWNET = 0x40000000
T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)


def _enter(netns: str) -> None:
    fd = os.open(Path("/run/netns", netns), os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise HypervisorError(f"cannot enter network namespace {netns}: {os.strerror(err)}")
    finally:
        os.close(fd)


# A peer that vanished (VM killed, network gone) is noticed after 10 s idle plus
# 4 unanswered probes 5 s apart: about 30 s, whatever is (or is not) being sent.
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 4}


def lasting(sock: socket.socket) -> socket.socket:
    """``sock`` made fit for a long session: blocking with no timeout (``timeout`` given to
    :func:`socket.create_connection` would otherwise stay on every later ``recv``, so an
    idle shell or ``docker logs -f`` would be dropped), and TCP keep-alives on."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in KEEPALIVE.items():
        sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return sock


def connect(host: str, port: int, timeout: float, netns: str | None = None) -> socket.socket:
    """A TCP connection to ``host:port``, made inside ``netns`` when given.

    ``timeout`` bounds the connect only: the socket returned blocks without a
    timeout and has keep-alives on (see :func:`lasting`).
    """
    return lasting(inside(netns, lambda: socket.create_connection((host, port), timeout=timeout)))


def datagram(host: str, port: int, netns: str | None = None) -> socket.socket:
    """A UDP socket inside ``netns`` (when given) whose peer is ``host:port``."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((host, port))
        return sock

    return inside(netns, make)


def inside(netns: str | None, make: Callable[[], T]) -> T:
    """``make()`` run in a short-lived thread that entered ``netns`` (at once without one)."""
    if netns is None:
        return make()
    result: list[T | BaseException] = []

    def work() -> None:
        try:
            _enter(netns)
            result.append(make())
        except BaseException as e:  # handed to the caller's thread below
            result.append(e)

    thread = threading.Thread(target=work, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
