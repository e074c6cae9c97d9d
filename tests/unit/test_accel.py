"""How a probe boot is judged: the kernel's banner within seconds, then its root."""

from __future__ import annotations

from pathlib import Path

from vmctl.hypervisor.accel import BANNER_WITHIN, judge, probe_argv

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
