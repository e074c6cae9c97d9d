"""Workstation figures for a running Docker host VM: what a user feels from the host.

    .venv/bin/python benchmarks/workstation.py NAME [--runs 5] [--mib 256] [--json FILE]

1. docker CLI latency, per command, through the VM's forwarded Docker socket
   (``unix://``) against ``ssh://vmctl-NAME`` (a new SSH handshake per command);
2. throughput of a published port: MIB MiB sent by a server in the guest, read
   on the host through ``127.0.0.1:PORT``, against the same transfer read from
   inside the runtime's network namespace straight from the guest's address;
3. how soon a port a container publishes (``docker run -d -p``) answers on the
   host after ``docker run`` returned, and how soon it is closed after ``docker rm -f``.

It prints the figures (medians, and min-max) and their ratios; it asserts
nothing: targets belong in docs/workstation.md, next to the numbers. The VM
must be running and made with ``--docker``; the benchmark adds and removes one
published port and leaves nothing else behind.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import vmctl
from vmctl._core import netns

COMMANDS = {
    "docker version": ["version", "--format", "{{.Server.Version}}"],
    "docker ps": ["ps", "-q"],
    "docker run --rm IMG true": ["run", "--rm", "--network", "none", "vmctl/busybox:latest", "true"],
}
GUEST_PORT = 19123
SERVER = (
    "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
    f"s.bind(('0.0.0.0', {GUEST_PORT})); s.listen(1); c, _ = s.accept(); b = bytes(1 << 20); "
    "[c.sendall(b) for _ in range({mib})]; c.close()"
)


def vmctl_cli(*args: str) -> str:
    exe = Path(sys.executable).with_name("vmctl")
    return subprocess.run([str(exe), *args], check=True, capture_output=True, text=True).stdout


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    return time.monotonic() - started


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(samples), 3), "min": round(min(samples), 3),
            "max": round(max(samples), 3), "n": len(samples)}


def latency(name: str, runs: int) -> dict[str, Any]:
    socket_path = vmctl_cli("docker", "socket", name).strip()
    vmctl_cli("docker", "env", name, "--ssh")  # writes the pinned-key ssh entry
    hosts = {"ssh": f"ssh://vmctl-{name}", "socket": f"unix://{socket_path}"}
    out: dict[str, Any] = {}
    for label, args in COMMANDS.items():
        row: dict[str, Any] = {}
        for via, host in hosts.items():
            env = {**os.environ, "DOCKER_HOST": host}
            timed(["docker", *args], env)  # warm: first use of the image, the ssh entry
            row[via] = summary([timed(["docker", *args], env) for _ in range(runs)])
        row["socket/ssh"] = round(row["socket"]["median"] / row["ssh"]["median"], 3)
        out[label] = row
    return out


def _serve(machine: vmctl.Machine, mib: int) -> None:
    code = SERVER.replace("{mib}", str(mib))
    machine.run(f"nohup python3 -c \"{code}\" >/dev/null 2>&1 &")
    time.sleep(1.5)  # the interpreter starts slowly in an emulated guest


def _drain(sock: socket.socket) -> tuple[int, float]:
    started, total = time.monotonic(), 0
    buf = bytearray(1 << 20)
    while n := sock.recv_into(buf):
        total += n
    sock.close()
    return total, time.monotonic() - started


def throughput(name: str, mib: int) -> dict[str, Any]:
    with vmctl.connect() as host:
        machine = host.get(name)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        _serve(machine, mib)
        ip = machine.ip
        assert ip is not None
        inside = _drain(netns.connect(ip, GUEST_PORT, 30, machine.record.netns))
        vmctl_cli("port", "add", name, f"{port}:{GUEST_PORT}")
        try:
            _serve(machine, mib)
            forwarded = _drain(socket.create_connection(("127.0.0.1", port), timeout=30))
        finally:
            vmctl_cli("port", "rm", name, str(port))
        machine.close()
    rates = {label: round(done / 2**20 / secs, 1) for label, (done, secs) in
             {"inside_netns": inside, "forwarded": forwarded}.items()}
    assert inside[0] == forwarded[0] == mib << 20, (inside, forwarded)
    return {"mib": mib, "MiB_per_s": rates, "forwarded/inside": round(rates["forwarded"] / rates["inside_netns"], 3)}


WEB = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _after(started: float, check: Any, limit: float = 60) -> float:
    while not check():
        if time.monotonic() - started > limit:
            return float("nan")
        time.sleep(0.02)
    return time.monotonic() - started


def publish_latency(name: str, runs: int) -> dict[str, Any]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{vmctl_cli('docker', 'socket', name).strip()}"}
    opened, closed = [], []
    for _ in range(runs):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        docker = ["docker", "run", "-d", "--name", "bench-web", "-p", f"{port}:80", "vmctl/busybox:latest"]
        subprocess.run([*docker, "sh", "-c", WEB], env=env, check=True, capture_output=True)
        opened.append(_after(time.monotonic(), lambda port=port: _answers(port)))
        subprocess.run(["docker", "rm", "-f", "bench-web"], env=env, check=True, capture_output=True)
        closed.append(_after(time.monotonic(), lambda port=port: not _answers(port)))
    return {"open_after_run_s": summary(opened), "closed_after_rm_s": summary(closed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = {"vm": args.name, "load_average": os.getloadavg()[0], "latency_s": latency(args.name, args.runs),
               "port": throughput(args.name, args.mib), "published": publish_latency(args.name, args.runs)}
    for label, row in figures["latency_s"].items():
        print(f"{label:<26} ssh:// {row['ssh']['median']:7.3f} s   socket {row['socket']['median']:7.3f} s   "
              f"socket/ssh {row['socket/ssh']:.3f}")
    port = figures["port"]
    print(f"published port, {port['mib']} MiB: forwarded {port['MiB_per_s']['forwarded']} MiB/s, "
          f"inside the namespace {port['MiB_per_s']['inside_netns']} MiB/s, ratio {port['forwarded/inside']}")
    pub = figures["published"]
    print(f"a container's published port answers {pub['open_after_run_s']['median']} s after docker run returned "
          f"(max {pub['open_after_run_s']['max']}); closed {pub['closed_after_rm_s']['median']} s after docker rm -f")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
