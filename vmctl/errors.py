"""Every exception vmctl raises, in one tree.

Every error derives from :class:`VmctlError`, so one ``except`` catches them all.
Each carries a one-line ``message`` (what failed and why) and a ``hint`` (how to
fix it), plus the fields a caller would act on (a name, a phase, an exit code)::

    VmctlError
    ├── ConfigError              bad input: names, sizes, files, plan keys; nothing was made
    │   ├── NoSuchMachine            no VM of that name on the host (name, uri)
    │   ├── NoSuchSnapshot           the VM has no snapshot of that name (machine, snapshot)
    │   └── NotManaged               a libvirt domain vmctl did not create (name, uri)
    ├── MachineStateError        the VM is not in the state the operation needs
    │   ├── MachineNotRunning        it is off, paused, crashed... (name, state)
    │   └── NoAddress                it runs but has no IPv4 address yet (name, state)
    ├── MissingDependency        a program, package or file vmctl needs is not installed
    ├── HypervisorError          libvirt unreachable or refusing an operation
    │   └── RuntimeStateError        the private runtime is missing or half-started
    ├── ImageError               unknown image, failed build
    │   ├── DownloadError            the server did not give us the file (url)
    │   └── ChecksumError            the file did not match its published checksum
    ├── ProbeError               the accelerator probe could not boot anything
    ├── CommandError             a host command failed (result: command, rc, output)
    ├── SSHError                 SSH could not connect, authenticate or run a command
    ├── HostKeyMismatch          the guest's host key is not the pinned one (never retried)
    ├── GuestError               a step inside the guest failed (machine)
    │   ├── CloudInitError           cloud-init did not finish cleanly
    │   ├── GuestSetupError          the fast profile's first-boot units did not finish
    │   └── DockerInstallError       a step of the Docker install failed (step, rc, output)
    ├── PhaseError               a phase of ``up`` failed (machine, phase, waited, cause, console)
    ├── SwarmError               a Swarm operation on a pool's nodes failed
    ├── PoolError                some nodes of a pool failed (results: node -> result or error)
    └── WaitTimeout              a bounded wait ran out (phase, seconds, what was seen last)

:class:`HostKeyMismatch` is deliberately not an :class:`SSHError`: code that retries
a flaky connection catches ``SSHError``, and a forged host key must never be retried.

Secrets never reach a message: every message and hint goes through :func:`redact`,
which masks Swarm join tokens (``SWMTKN-...``), the value after ``--token`` or
``--password``, and ``password=...``-style settings, wherever a command or its
output is quoted.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._core.proc import CommandResult

__all__ = [
    "ChecksumError", "CloudInitError", "CommandError", "ConfigError", "DockerInstallError",
    "DownloadError", "GuestError", "GuestSetupError", "HostKeyMismatch", "HypervisorError", "ImageError",
    "MachineNotRunning", "MachineStateError", "MissingDependency", "NoAddress", "NoSuchMachine",
    "NoSuchSnapshot", "NotManaged", "PhaseError", "PoolError", "ProbeError", "RuntimeStateError", "SSHError",
    "SwarmError", "VmctlError", "WaitTimeout",
]


MASK = "***"
_SECRET_WORD = r"[\w.-]*(?:password|passwd|secret|token)"
_SECRETS = (  # (pattern, replacement), applied in order
    (re.compile(r"SWMTKN-[0-9A-Za-z-]+"), f"SWMTKN-{MASK}"),  # a Swarm join token, wherever it is
    (re.compile(rf"(--{_SECRET_WORD}(?:=|\s+))('[^']*'|\"[^\"]*\"|\S+)", re.I), rf"\1{MASK}"),
    (re.compile(rf"(\b{_SECRET_WORD}=)('[^']*'|\"[^\"]*\"|[^\s'\",;&]+)", re.I), rf"\1{MASK}"),
    (re.compile(rf"(\"{_SECRET_WORD}\"\s*:\s*)\"(?:[^\"\\]|\\.)*\"", re.I), rf'\1"{MASK}"'),
)


def redact(text: str) -> str:
    """``text`` with its secrets masked: Swarm join tokens, the value after ``--token``,
    ``--password`` (and the like), and ``password=``/``token=`` settings, in JSON too."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class VmctlError(Exception):
    """Root of every vmctl error. Its message and hint are redacted (:func:`redact`):
    a command quoted in an error never shows a token or a password."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = redact(hint)

    def __str__(self) -> str:
        return self.message


# bad input ----------------------------------------------------------------------


class ConfigError(VmctlError):
    """The caller asked for something invalid; nothing was created."""

    hint = "check the value and try again; --help lists what is accepted"


class NoSuchMachine(ConfigError):
    """There is no VM called ``name`` on the host at ``uri``."""

    hint = "'vmctl ls' lists the VMs"

    def __init__(self, name: str, uri: str) -> None:
        super().__init__(f"no VM named {name!r} on {uri}")
        self.name, self.uri = name, uri


class NoSuchSnapshot(ConfigError):
    """VM ``machine`` has no snapshot called ``snapshot``."""

    def __init__(self, machine: str, snapshot: str) -> None:
        super().__init__(f"{machine} has no snapshot named {snapshot!r}",
                         hint=f"'vmctl snapshot ls {machine}' lists its snapshots")
        self.machine, self.snapshot = machine, snapshot


class NotManaged(ConfigError):
    """A libvirt domain exists under that name, but vmctl did not create it."""

    hint = "vmctl only manages the VMs it created; use virsh for the others"

    def __init__(self, name: str, uri: str) -> None:
        super().__init__(f"{name!r} on {uri} is not a vmctl VM (no vmctl metadata)")
        self.name, self.uri = name, uri


# a VM in the wrong state ----------------------------------------------------------


class MachineStateError(VmctlError):
    """The VM exists but is not in the state the operation needs."""

    def __init__(self, message: str, *, name: str, state: str, hint: str = "") -> None:
        super().__init__(message, hint=hint or f"start it with 'vmctl start {name}'")
        self.name, self.state = name, state


class MachineNotRunning(MachineStateError):
    """The VM is not running (off, paused, crashed...)."""

    def __init__(self, name: str, state: str, *, hint: str = "") -> None:
        super().__init__(f"{name} is {state}, not running", name=name, state=state, hint=hint)


class NoAddress(MachineStateError):
    """The VM has no IPv4 address yet (not running, or no DHCP lease so far)."""

    def __init__(self, name: str, state: str) -> None:
        super().__init__(f"{name} has no address (state: {state})", name=name, state=state)


class MissingDependency(VmctlError):
    """A program, Python package or file that vmctl needs is not installed."""

    hint = "install it (make deps installs every package vmctl uses)"


# the hypervisor -------------------------------------------------------------------


class HypervisorError(VmctlError):
    """libvirt could not be reached or refused an operation."""

    hint = "run 'vmctl doctor' to see what is wrong with the hypervisor"


class RuntimeStateError(HypervisorError):
    """vmctl's private libvirt runtime is not running or not healthy."""

    hint = "start it with 'vmctl hypervisor start', or pass --connect URI"


class ProbeError(VmctlError):
    """No accelerator could boot the probe kernel."""

    hint = "check that qemu-system-x86_64 runs; 'vmctl doctor --json' has details"


# images -----------------------------------------------------------------------------


class ImageError(VmctlError):
    """An image is unknown, missing from the cache, or failed to build."""

    hint = "'vmctl image ls' shows the cache; 'vmctl image build NAME' makes one"


class DownloadError(ImageError):
    """A download failed (network, HTTP status, truncated body)."""

    hint = "check the URL is reachable; re-running resumes the partial download"

    def __init__(self, message: str, *, url: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.url = url


class ChecksumError(ImageError):
    """A downloaded file does not match the checksum it was published with."""

    hint = "the download was discarded; pull again, or check the checksum list"

    def __init__(self, message: str, *, path: str, expected: str, got: str) -> None:
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.got = got


# commands on the host and in guests ---------------------------------------------------


class CommandError(VmctlError):
    """A host command failed; carries the command, exit code and output tail."""

    def __init__(self, result: CommandResult, *, what: str, hint: str = "") -> None:
        super().__init__(
            f"{what} failed (exit {result.rc}): {result.tail() or 'no output'}", hint=hint
        )
        self.result = replace(  # the command and output it carries are as redacted as the message
            result, command=redact(result.command), stdout=redact(result.stdout), stderr=redact(result.stderr)
        )


class SSHError(VmctlError):
    """SSH could not connect, authenticate or run a command."""

    hint = "'vmctl console NAME' shows what the guest is doing"


class HostKeyMismatch(VmctlError):
    """The guest presented a host key other than the one vmctl pinned for it."""

    hint = "the VM is not the one vmctl created, or it was tampered with; 'vmctl down' and 'up' it again"

    def __init__(self, machine: str, expected: str, got: str) -> None:
        super().__init__(
            f"{machine}: host key {got} does not match the pinned key {expected}; connection refused"
        )
        self.machine, self.expected, self.got = machine, expected, got


class GuestError(VmctlError):
    """A step inside the guest failed."""

    def __init__(self, message: str, *, machine: str, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.machine = machine


class CloudInitError(GuestError):
    """cloud-init did not finish cleanly in the guest."""

    def __init__(self, machine: str, rc: int, detail: str) -> None:
        super().__init__(
            f"cloud-init did not finish cleanly (exit {rc}): {detail}", machine=machine,
            hint=f"'vmctl ssh {machine} -- sudo cat /var/log/cloud-init.log'",
        )
        self.rc, self.detail = rc, detail


class GuestSetupError(GuestError):
    """The guest's own first-boot setup (the fast profile's units) did not finish."""

    def __init__(self, machine: str, unit: str, output: str, failed: list[str]) -> None:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        why = f"failed: {', '.join(failed)}" if failed else (lines[-1] if lines else "no output")
        super().__init__(
            f"{unit} was not reached ({why})", machine=machine,
            hint=f"'vmctl ssh {machine} -- journalctl -b -u {failed[0] if failed else unit}' says why",
        )
        self.unit, self.failed = unit, failed


class DockerInstallError(GuestError):
    """A step of the Docker install failed in the guest."""

    def __init__(self, machine: str, step: str, rc: int, output: str) -> None:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        super().__init__(
            f"{machine}: docker install step {step!r} failed (exit {rc}): "
            f"{lines[-1] if lines else 'no output'}", machine=machine,
            hint=f"'vmctl ssh {machine} -- sudo journalctl -u docker' has the daemon's log",
        )
        self.step, self.rc, self.output = step, rc, output


class PhaseError(VmctlError):
    """A phase of ``up`` failed; carries the phase, the wait, and the console tail."""

    def __init__(self, machine: str, phase: str, waited: float, cause: VmctlError, console: list[str]) -> None:
        super().__init__(
            f"{machine}: {phase} failed after {waited:.0f}s: {cause.message}",
            hint=("console: " + " | ".join(console[-3:])) if console else cause.hint,
        )
        self.machine, self.phase, self.waited, self.cause, self.console = machine, phase, waited, cause, console


# pools -------------------------------------------------------------------------------


class SwarmError(VmctlError):
    """A Swarm operation on a pool's nodes failed."""

    hint = "'vmctl pool status NAME' shows each node; re-running the command converges"


class PoolError(VmctlError):
    """Some nodes failed; ``results`` maps every node to its result or its exception."""

    hint = "the other nodes are usable; re-run the same command to converge"

    def __init__(self, pool: str, action: str, results: dict[str, object]) -> None:
        failed = {k: v for k, v in results.items() if isinstance(v, BaseException)}
        detail = "; ".join(f"{k}: {getattr(v, 'message', str(v))}" for k, v in failed.items())
        super().__init__(f"pool {pool}: {action} failed on {len(failed)} of {len(results)} node(s): {detail}")
        self.pool, self.action, self.results, self.failed = pool, action, results, failed


# waits -------------------------------------------------------------------------------


class WaitTimeout(VmctlError):
    """A bounded wait ran out before its condition held."""

    hint = "raise the timeout, or read the serial console with 'vmctl console NAME'"

    def __init__(self, phase: str, seconds: float, seen: str, *, hint: str = "") -> None:
        super().__init__(
            f"timed out after {seconds:.0f}s waiting for {phase}; last seen: {seen or 'nothing'}",
            hint=hint,
        )
        self.phase = redact(phase)
        self.seconds = seconds
        self.seen = redact(seen)
