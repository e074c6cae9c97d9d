"""Is KVM usable? Answered by booting, never by ``/dev/kvm`` existing.

On some hosts ``/dev/kvm`` opens and libvirt reports KVM, yet every 64-bit
guest hangs right after the kernel decompressor. So vmctl boots a kernel
under each accelerator and reads the serial console: an accelerator is
usable when the kernel gets as far as looking for its root filesystem. The
verdict is cached per QEMU version and host kernel.

What the probe relies on to be quick: with ``earlyprintk`` the kernel prints
its banner (``Linux version ...``) as the first thing it does once
decompressed. Under a working KVM that is well within a second of QEMU's
start, under TCG here 1-2 s; under the broken KVM nothing ever follows the
decompressor. So KVM is judged hung when no banner has come after
``BANNER_WITHIN`` seconds; a KVM that printed its banner, however slow the
rest, is given the whole timeout to reach userspace. The TCG probe runs at
the same time, so when KVM hangs its answer is ready about as soon.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .._core.locks import file_lock
from .._core.paths import cache_dir, state_dir
from .._core.poll import Look, wait_for
from .._core.proc import run
from .._core.progress import NoProgress, Progress
from ..errors import ProbeError, WaitTimeout

QEMU = "qemu-system-x86_64"
# Lines a kernel prints only once it has fully initialised.
REACHED = ("Kernel panic", "VFS: Unable to mount root", "Run /init", "Freeing unused kernel")
BANNER = "Linux version"  # the kernel's first line (with earlyprintk: as soon as it runs)
BANNER_WITHIN = 6.0  # seconds; a working accelerator prints it in 1-2 s even when emulating


@dataclass(frozen=True)
class ProbeResult:
    accel: str
    ok: bool
    seconds: float
    seen: str


@dataclass(frozen=True)
class Verdict:
    accel: str
    qemu: str
    host_kernel: str
    probed_at: float
    probes: list[ProbeResult]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def qemu_version() -> str:
    out = run([QEMU, "--version"], what="qemu-system-x86_64 --version").stdout
    return out.splitlines()[0].strip() if out else "unknown"


def probe_argv(accel: str, kernel: Path, serial: Path) -> list[str]:
    return [
        QEMU, "-accel", accel, "-machine", "pc", "-m", "256", "-smp", "1",
        "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", f"file:{serial}", "-kernel", str(kernel),
        "-append", "earlyprintk=serial,ttyS0,115200 console=ttyS0 panic=-1 loglevel=4",
    ]  # fmt: skip


def probe(accel: str, kernel: Path, timeout: float = 60, stop: threading.Event | None = None) -> ProbeResult:
    """Boot ``kernel`` under ``accel`` for at most ``timeout`` seconds (``BANNER_WITHIN`` if it
    prints no banner); ``stop`` set ends it early, as not needed."""
    with tempfile.TemporaryDirectory(prefix="vmctl-probe-") as tmp:
        serial = Path(tmp) / "serial.log"
        started = time.monotonic()
        proc = subprocess.Popen(
            probe_argv(accel, kernel, serial), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            return _watch(accel, proc, serial, started, timeout, stop or threading.Event())
        finally:
            proc.kill()
            proc.wait()


def judge(accel: str, text: str, elapsed: float) -> ProbeResult | None:
    """The verdict on a probe from its console ``text`` after ``elapsed`` seconds; None: wait on."""
    lines = text.splitlines()
    if reached := [line for line in lines if any(m in line for m in REACHED)]:
        return ProbeResult(accel, True, round(elapsed, 2), reached[0].strip()[:200])
    if elapsed >= BANNER_WITHIN and not any(BANNER in line for line in lines):
        seen = _last_line(text) or "no output on the serial console"
        return ProbeResult(accel, False, round(elapsed, 2), f"hung: no kernel banner after {BANNER_WITHIN:.0f} s "
                                                            f"(last: {seen})")
    return None


def _watch(accel: str, proc: subprocess.Popen[bytes], serial: Path, started: float, timeout: float,
           stop: threading.Event) -> ProbeResult:
    def outcome(look: Look) -> ProbeResult | None:
        text = serial.read_text(errors="replace") if serial.exists() else ""
        if verdict := judge(accel, text, look.elapsed):
            return verdict
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            why = _last_line(err or text) or f"exit {proc.returncode}"
            return ProbeResult(accel, False, round(look.elapsed, 2), why)
        if stop.is_set():
            return ProbeResult(accel, False, round(look.elapsed, 2), "stopped: another accelerator answered first")
        look.seen = _last_line(text) or "no output on the serial console"
        return None

    try:
        return wait_for(f"the probe kernel under {accel}", outcome, timeout, interval=0.1, since=started)
    except WaitTimeout as e:
        return ProbeResult(accel, False, round(time.monotonic() - started, 2), f"hung: {e.seen}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def find_kernel() -> Path:
    """A kernel to probe with: a cached image's, the host's, or one from the Debian archive."""
    candidates = sorted((cache_dir() / "images").glob("*.vmlinuz"))
    candidates += [Path(f"/boot/vmlinuz-{os.uname().release}")]
    candidates += sorted((cache_dir() / "probe").glob("vmlinuz-*"))
    for path in candidates:
        if path.is_file() and os.access(path, os.R_OK):
            return path
    return fetch_debian_kernel(cache_dir() / "probe")


def fetch_debian_kernel(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    deps = run(["apt-cache", "depends", "linux-image-cloud-amd64"], what="apt-cache depends").stdout
    names = [line.split(":", 1)[1].strip() for line in deps.splitlines() if "Depends: linux-image-" in line]
    if not names:
        raise ProbeError("no kernel package found to probe with", hint="run apt-get update")
    run(["apt-get", "download", names[0]], what=f"downloading {names[0]}", timeout=300, cwd=directory)
    deb = next(directory.glob(f"{names[0]}_*.deb"))
    extract = directory / "x"
    run(["dpkg-deb", "-x", str(deb), str(extract)], what="dpkg-deb -x")
    kernel = next((extract / "boot").glob("vmlinuz-*"))
    final = directory / kernel.name
    kernel.replace(final)
    run(["rm", "-rf", str(extract), str(deb)], what="cleaning up")
    return final


def accelerator(progress: Progress = NoProgress()) -> str:
    """``kvm`` or ``tcg``: the cached verdict of ``vmctl doctor``, probing if there is none."""
    if (verdict := cached_verdict()) is None:
        progress.phase("probing the accelerator (kvm and tcg at once)")
        verdict = decide()
    return verdict.accel


def verdict_file() -> Path:
    return state_dir() / "accel.json"


def cached_verdict() -> Verdict | None:
    verdict = _read_verdict(verdict_file())
    if verdict is None or (verdict.qemu, verdict.host_kernel) != (qemu_version(), os.uname().release):
        return None
    return verdict


def _read_verdict(path: Path) -> Verdict | None:
    """The verdict kept in ``path``; None if there is none, or it cannot be read."""
    try:
        raw = json.loads(path.read_text())
        raw["probes"] = [ProbeResult(**p) for p in raw["probes"]]
        return Verdict(**raw)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _keep(path: Path, verdict: Verdict) -> None:
    """Write ``verdict`` to ``path``: readers never see half a verdict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(verdict.to_dict(), indent=2))
    tmp.replace(path)


def decide(reprobe: bool = False, kvm_timeout: float = 60) -> Verdict:
    """The accelerator to use: the cached verdict, or a fresh probe of kvm and tcg."""
    if not reprobe and (verdict := cached_verdict()) is not None:
        return verdict
    with file_lock(verdict_file().with_suffix(".lock")):  # one probe, however many VMs start at once
        if not reprobe and (verdict := cached_verdict()) is not None:
            return verdict
        return _probe_all(kvm_timeout)


def _probe_all(kvm_timeout: float) -> Verdict:
    """KVM (when ``/dev/kvm`` is there) and TCG at once; KVM wins when it works."""
    kernel = find_kernel()
    if not os.path.exists("/dev/kvm"):
        probes = [probe("tcg", kernel, 120)]
    else:
        stop, results = threading.Event(), dict[str, ProbeResult]()
        tcg = threading.Thread(target=lambda: results.update(tcg=probe("tcg", kernel, 120, stop)), daemon=True)
        tcg.start()
        kvm = probe("kvm", kernel, kvm_timeout)
        if kvm.ok:
            stop.set()
        tcg.join()
        probes = [kvm, results.get("tcg") or ProbeResult("tcg", False, 0.0, "the probe thread failed")]
    working = [p for p in probes if p.ok]
    if not working:
        raise ProbeError(f"no accelerator booted the probe kernel: {probes[-1].seen}")
    verdict = Verdict(working[0].accel, qemu_version(), os.uname().release, time.time(), probes)
    _keep(verdict_file(), verdict)
    return verdict


# a remote hypervisor ------------------------------------------------------------------------

Shell = Callable[[str, float], tuple[int, str, str]]  # run a command there: exit status, stdout, stderr
REMOTE_KVM_TIMEOUT = 12.0  # a KVM that works reaches userspace in a second or two
REMOTE_TCG_TIMEOUT = 90.0


def remote_probe_script(accel: str, timeout: float, kernel: str) -> str:
    """The probe as a shell command for the remote host, its console on stdout."""
    argv = probe_argv(accel, Path(kernel), Path("SERIAL"))
    argv[argv.index("file:SERIAL")] = "stdio"
    return f"exec timeout {timeout:.0f} {shlex.join(argv)}"


def probe_remote(shell: Shell, accel: str, timeout: float, kernel: str) -> ProbeResult:
    """Boot ``kernel`` (a path there) under ``accel`` on the remote host, for at most ``timeout`` s."""
    started = time.monotonic()
    rc, out, err = shell(remote_probe_script(accel, timeout, kernel), timeout + 30)
    elapsed = time.monotonic() - started
    if verdict := judge(accel, out, max(elapsed, BANNER_WITHIN)):
        return verdict
    why = "hung" if rc == 124 else f"exit {rc}"
    return ProbeResult(accel, False, round(elapsed, 2), f"{why}: {_last_line(err) or _last_line(out) or 'no output'}")


def remote_verdict_file(uri: str) -> Path:
    return state_dir() / "accel" / f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}.json"


def decide_remote(uri: str, shell: Shell, kernel: Callable[[], str], reprobe: bool = False,
                  progress: Progress = NoProgress()) -> Verdict:
    """The accelerator of the remote host ``uri``, found by booting a kernel there (KVM first,
    TCG when KVM does not boot it); kept per host, QEMU version and kernel there. ``kernel()``
    gives the probe kernel's path on that host (called only when a probe runs)."""
    _, out, err = shell(f'echo "qemu=$({QEMU} --version 2>/dev/null | head -n 1)"; echo "kernel=$(uname -r)"; '
                        'test -e /dev/kvm && echo kvm=yes', 30)
    found = dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)
    qemu, host_kernel, kvm = found.get("qemu", ""), found.get("kernel", ""), found.get("kvm") == "yes"
    if not qemu or not host_kernel:
        raise ProbeError(f"{QEMU} does not answer on {uri}" + (f": {_last_line(err)}" if err.strip() else ""),
                         hint="install qemu-system-x86 there")
    path = remote_verdict_file(uri)
    if not reprobe and (cached := _cached(path, qemu, host_kernel)):
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):  # one probe, however many of its VMs start at once
        if not reprobe and (cached := _cached(path, qemu, host_kernel)):
            return cached
        return _probe_remote_all(uri, shell, kernel, qemu, host_kernel, kvm, path, progress)


def _cached(path: Path, qemu: str, host_kernel: str) -> Verdict | None:
    verdict = _read_verdict(path)
    return verdict if verdict is not None and (verdict.qemu, verdict.host_kernel) == (qemu, host_kernel) else None


def _probe_remote_all(uri: str, shell: Shell, kernel: Callable[[], str], qemu: str, host_kernel: str, kvm: bool,
                      path: Path, progress: Progress) -> Verdict:
    progress.phase(f"probing the accelerator of {uri} (booting its kernel there)")
    there = kernel()
    probes = [probe_remote(shell, "kvm", REMOTE_KVM_TIMEOUT, there)] if kvm else []
    if not any(p.ok for p in probes):
        probes.append(probe_remote(shell, "tcg", REMOTE_TCG_TIMEOUT, there))
    working = [p for p in probes if p.ok]
    if not working:
        raise ProbeError(f"no accelerator booted the probe kernel on {uri}: {probes[-1].seen}")
    verdict = Verdict(working[0].accel, qemu, host_kernel, time.time(), probes)
    _keep(path, verdict)
    return verdict
