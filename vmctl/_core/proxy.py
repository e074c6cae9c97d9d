"""``python -m vmctl._core.proxy NETNS HOST PORT``: OpenSSH's ProxyCommand into a network namespace.

VMs on vmctl's private runtime are only reachable inside its network namespace,
so ssh (and docker over ssh://, which opens a connection per call) reaches them
through this pipe. ssh starts it once per connection, so it must start fast:
this module imports the standard library and :mod:`vmctl._core.netns` only
(it lives in ``_core`` rather than ``cli`` so that not even click is loaded).
It is a program, not library code: it prints one ``error:`` line and exits
non-zero on failure. The hidden ``vmctl netns-proxy`` command runs the same
:func:`pipe`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

from ..errors import VmctlError
from . import netns as _netns

CONNECT_TIMEOUT = 15.0
CHUNK = 65536


def pipe(netns: str, host: str, port: int) -> None:
    """Connect to HOST:PORT inside NETNS, then relay stdin and stdout over it until it closes."""
    relay(_netns.connect(host, port, CONNECT_TIMEOUT, netns))


def relay(sock: socket.socket) -> None:
    """Copy stdin to ``sock`` (a thread) and ``sock`` to stdout, until the far end closes."""

    def upstream() -> None:
        while data := os.read(0, CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(CHUNK):
        os.write(1, data)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vmctl._core.proxy",
        description="Pipe stdin/stdout to HOST:PORT inside network namespace NETNS (an OpenSSH ProxyCommand).",
    )
    parser.add_argument("netns", metavar="NETNS")
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("port", metavar="PORT", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the pipe; a failure is one ``error:`` line on stderr (ssh shows it), exit 1 (130 on Ctrl-C).

    The same lines :mod:`vmctl.cli.output` prints for the click commands, written
    out here so that this module needs neither click nor the command modules.
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args.netns, args.host, args.port)
    except KeyboardInterrupt:
        return _error("interrupted", code=130)


def _run(netns: str, host: str, port: int) -> int:
    """:func:`pipe`, telling a connection that could not be made from one that broke."""
    where = f"{host}:{port} in network namespace {netns}"
    try:
        sock = _netns.connect(host, port, CONNECT_TIMEOUT, netns)
    except VmctlError as e:
        return _error(e.message, e.hint)
    except OSError as e:
        return _error(f"cannot connect to {where}: {_reason(e)}")
    try:
        relay(sock)
    except OSError as e:
        return _error(f"the connection to {where} broke: {_reason(e)}")
    return 0


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)) + (f" ({error.filename})" if error.filename else "")


def _error(message: str, hint: str = "", code: int = 1) -> int:
    sys.stderr.write(f"error: {message}\n" + (f"hint: {hint}\n" if hint else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
