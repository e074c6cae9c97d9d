"""Debian packages for guests with no route out, resolved and fetched by the host.

The host runs its own apt against a private configuration: the guest's suite
on the configured mirror, and the guest's own dpkg status file. So apt works
out exactly what that guest lacks, downloads it (verifying the archive's
signatures and hashes) into a cache shared by every guest, and vmctl pushes
those files over SFTP. A second guest of the same image downloads nothing.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .._core.locks import file_lock
from .._core.proc import run
from ..errors import MissingDependency, VmctlError

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LISTS_MAX_AGE = 24 * 3600
_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*\[(\S+)\]\)")


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        """The name apt gives the file in its archive cache (an epoch's ':' becomes %3a)."""
        return f"{self.package}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def parse_simulation(text: str) -> list[Deb]:
    """The packages ``apt-get install -s`` would unpack, in order."""
    return [Deb(m.group(1), m.group(2), m.group(3)) for line in text.splitlines() if (m := _INST.match(line))]


class AptRoot:
    """A private apt configuration for one suite, with a shared archive cache."""

    def __init__(self, cache: Path, suite: str, mirror: str, arch: str = "amd64") -> None:
        mirror_id = hashlib.sha256(mirror.encode()).hexdigest()[:8]  # lists differ per mirror
        self.root = cache / "apt" / f"{suite}-{arch}-{mirror_id}"
        self.archives = cache / "debs"
        self.suite, self.mirror, self.arch = suite, mirror, arch

    def options(self, status: Path) -> list[str]:
        r = self.root
        opts = {
            "Dir::State": r / "state", "Dir::State::Lists": r / "lists", "Dir::State::status": status,
            "Dir::Cache": r / "cache", "Dir::Cache::archives": self.archives,
            "Dir::Etc::SourceList": r / "sources.list", "Dir::Etc::SourceParts": "/nonexistent",
            "Dir::Etc::Preferences": "/nonexistent", "Dir::Etc::PreferencesParts": "/nonexistent",
            "APT::Architecture": self.arch, "APT::Architectures": self.arch,
            "APT::Install-Recommends": "false", "Debug::NoLocking": "true",
        }
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def prepare(self) -> None:
        for d in (self.root / "lists/partial", self.root / "state", self.root / "cache", self.archives / "partial"):
            d.mkdir(parents=True, exist_ok=True)
        if not KEYRING.exists():
            raise MissingDependency(f"{KEYRING} is missing", hint="apt-get install debian-archive-keyring")
        (self.root / "sources.list").write_text(f"deb [signed-by={KEYRING}] {self.mirror} {self.suite} main\n")

    def update(self, status: Path) -> None:
        stamp = self.root / "lists" / ".updated"
        if stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE:
            return
        run(["apt-get", *self.options(status), "update", "-q"], what=f"apt-get update ({self.mirror} {self.suite})",
            timeout=600, hint="the host must reach the Debian mirror (VMCTL_DEBIAN_MIRROR overrides it)")
        stamp.touch()

    def fetch(self, status: Path, packages: list[str], optional: tuple[str, ...] = ()) -> list[Path]:
        """Resolve ``packages`` (and those of ``optional`` the suite has) against ``status``
        and download what is missing; returns the files."""
        status.write_text(settled(status.read_text(errors="replace")))
        with file_lock(self.root.parent / f"{self.root.name}.lock"):
            self.prepare()
            self.update(status)
            packages = [*packages, *(p for p in optional if self._has(status, p))]
            # --fix-broken: a guest whose install was interrupted has half-installed packages;
            # apt then plans their reinstall (and missing dependencies) with what was asked for
            apt = ["apt-get", *self.options(status), "install", "-y", "-q", "--fix-broken"]
            simulated = run([*apt, "-s", *packages], what="apt-get install -s", timeout=300)
            debs = parse_simulation(simulated.stdout)
            if debs:
                run([*apt, "--download-only", *packages], what="downloading packages", timeout=1800)
            return [self._file(deb) for deb in debs]

    def _has(self, status: Path, package: str) -> bool:
        """Whether the suite has a real package of that name (a candidate to install)."""
        shown = run(["apt-cache", *self.options(status), "show", "--no-all-versions", package],
                    what=f"apt-cache show {package}", check=False, timeout=120)
        return shown.rc == 0 and f"Package: {package}" in shown.stdout.splitlines()

    def _file(self, deb: Deb) -> Path:
        path = self.archives / deb.filename
        if not path.exists():
            raise VmctlError(f"apt did not download {deb.filename}")
        return path


UNSETTLED = ("half-installed", "unpacked", "half-configured")


def settled(status: str) -> str:
    """A dpkg status file without the packages an interrupted dpkg left in between
    (unpacked, half-installed, half-configured): resolved against it, they are
    installed again, with whatever of their dependencies never got unpacked."""
    stanzas = status.split("\n\n")
    keep = [s for s in stanzas if not any(line.startswith("Status:") and line.split()[-1] in UNSETTLED
                                          for line in s.splitlines())]
    return "\n\n".join(keep)
