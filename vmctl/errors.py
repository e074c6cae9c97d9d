"""The exceptions vmctl raises.

Every error derives from :class:`VmctlError`, so one ``except`` catches them all.
Each carries a one-line ``message`` (what failed and why) and a ``hint`` (how to fix it)::

    VmctlError
    ├── ConfigError          bad input: names, sizes, files, plan keys
    ├── HypervisorError      libvirt unreachable or refusing an operation
    │   └── RuntimeStateError    the private runtime is missing or half-started
    ├── ImageError           unknown image, failed build
    │   ├── DownloadError        the server did not give us the file
    │   └── ChecksumError        the file did not match its published checksum
    ├── ProbeError           the accelerator probe could not boot anything
    └── WaitTimeout          a bounded wait ran out (phase, seconds, what was seen)
"""

from __future__ import annotations


class VmctlError(Exception):
    """Root of every vmctl error."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(VmctlError):
    """The caller asked for something invalid; nothing was created."""

    hint = "check the value and try again; --help lists what is accepted"


class HypervisorError(VmctlError):
    """libvirt could not be reached or refused an operation."""

    hint = "run 'vmctl doctor' to see what is wrong with the hypervisor"


class RuntimeStateError(HypervisorError):
    """vmctl's private libvirt runtime is not running or not healthy."""

    hint = "start it with 'vmctl hypervisor start', or pass --connect URI"


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


class ProbeError(VmctlError):
    """No accelerator could boot the probe kernel."""

    hint = "check that qemu-system-x86_64 runs; 'vmctl doctor --json' has details"


class WaitTimeout(VmctlError):
    """A bounded wait ran out before its condition held."""

    hint = "raise the timeout, or read the serial console with 'vmctl console NAME'"

    def __init__(self, phase: str, seconds: float, seen: str, *, hint: str = "") -> None:
        super().__init__(
            f"timed out after {seconds:.0f}s waiting for {phase}; last seen: {seen or 'nothing'}",
            hint=hint,
        )
        self.phase = phase
        self.seconds = seconds
        self.seen = seen
