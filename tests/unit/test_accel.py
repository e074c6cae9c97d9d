"""How a probe boot is judged: the kernel's banner within seconds, then its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmctl.errors import ProbeError
from vmctl.hypervisor.accel import BANNER_WITHIN, decide_remote, judge, probe_argv

DECOMPRESSED = "Decompressing Linux... Parsing ELF... done.\nBooting the kernel.\n"
BANNER = "[    0.000000] Linux version 6.1.0-27-cloud-amd64 (debian-kernel@lists.debian.org)\n"


def test_a_kernel_that_reaches_its_root_is_a_working_accelerator() -> None:
    seen = judge("tcg", DECOMPRESSED + BANNER + "[ 3.1] VFS: Unable to mount root fs on unknown-block(0,0)\n", 4.2)
    assert seen is not None and seen.ok and seen.seen.startswith("[ 3.1] VFS: Unable to mount root")


def test_no_banner_within_the_limit_is_a_hang_and_says_what_it_saw_last() -> None:
    assert judge("kvm", DECOMPRESSED, BANNER_WITHIN - 0.5) is None  # still within the limit
    hung = judge("kvm", DECOMPRESSED, BANNER_WITHIN)
    assert hung is not None and not hung.ok
    assert hung.seen == f"hung: no kernel banner after {BANNER_WITHIN:.0f} s (last: Booting the kernel.)"
    assert "no output on the serial console" in (judge("kvm", "", BANNER_WITHIN + 1) or hung).seen


def test_a_slow_accelerator_that_printed_its_banner_is_waited_for() -> None:
    assert judge("kvm", DECOMPRESSED + BANNER, 30.0) is None  # the caller's timeout decides, not the banner limit


def test_the_probe_kernel_prints_its_banner_early() -> None:
    append = probe_argv("kvm", Path("/k"), Path("/s"))[-1]
    assert append.startswith("earlyprintk=serial,ttyS0") and "panic=-1" in append


# a remote host's verdict --------------------------------------------------------------------

class FakeRemote:
    """A remote host's shell: its QEMU and kernel, and how each accelerator's probe ends."""

    def __init__(self, kvm_output: str, has_kvm: bool = True) -> None:
        self.kvm_output, self.has_kvm = kvm_output, has_kvm
        self.commands: list[str] = []

    def __call__(self, command: str, timeout: float) -> tuple[int, str, str]:
        self.commands.append(command)
        if "--version" in command:
            return (0 if self.has_kvm else 1), "qemu=QEMU emulator version 7.2.0\nkernel=6.1.0-27-amd64\n" + (
                "kvm=yes\n" if self.has_kvm else ""), ""
        if "-accel kvm" in command:
            return (124 if not self.kvm_output.count("VFS") else 0), self.kvm_output, ""
        return 0, DECOMPRESSED + BANNER + "VFS: Unable to mount root fs\n", ""


def test_a_remote_hosts_hung_kvm_falls_back_to_tcg_and_the_verdict_is_kept(isolated: Path) -> None:
    shell, kernels = FakeRemote(DECOMPRESSED), []
    verdict = decide_remote("qemu+ssh://b/system", shell, lambda: kernels.append(1) or "/pool/k.vmlinuz")
    assert verdict.accel == "tcg" and [(p.accel, p.ok) for p in verdict.probes] == [("kvm", False), ("tcg", True)]
    assert verdict.probes[0].seen.startswith("hung: no kernel banner")
    assert "-kernel /pool/k.vmlinuz" in shell.commands[1] and "-serial stdio" in shell.commands[1]
    assert shell.commands[1].startswith("exec timeout 12 qemu-system-x86_64 -accel kvm")
    again = decide_remote("qemu+ssh://b/system", shell, lambda: "/nowhere")
    assert again == verdict and len(shell.commands) == 4 and kernels == [1]  # only the version asked again


def test_a_remote_host_without_dev_kvm_is_probed_under_tcg_only(isolated: Path) -> None:
    shell = FakeRemote("", has_kvm=False)
    verdict = decide_remote("qemu+ssh://c/system", shell, lambda: "/pool/k.vmlinuz")
    assert verdict.accel == "tcg" and [p.accel for p in verdict.probes] == ["tcg"]


def test_a_remote_host_with_working_kvm_uses_it(isolated: Path) -> None:
    verdict = decide_remote("qemu+ssh://d/system", FakeRemote(DECOMPRESSED + BANNER + "VFS: Unable to mount root\n"),
                            lambda: "/k")
    assert verdict.accel == "kvm" and len(verdict.probes) == 1


def test_a_remote_host_without_qemu_is_one_clear_error(isolated: Path) -> None:
    def shell(command: str, timeout: float) -> tuple[int, str, str]:
        return 1, "qemu=\nkernel=6.1.0-27-amd64\nkvm=yes\n", ""

    with pytest.raises(ProbeError, match="qemu-system-x86_64 does not answer on qemu\\+ssh://e/system"):
        decide_remote("qemu+ssh://e/system", shell, lambda: "/k")
