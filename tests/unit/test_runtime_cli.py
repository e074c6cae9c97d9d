"""What `vmctl hypervisor start` and `status` say about a runtime found half running."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner

from vmctl import api
from vmctl.cli import main
from vmctl.cli.hypervisor import start_message, state_text
from vmctl.hypervisor.runtime import RuntimeStatus

URI = "qemu:///system?socket=/r/sock/libvirt-sock"


def status(virtlogd: int | None = 10, libvirtd: int | None = 20, socket: bool = True, netns: bool = True,
           qemu: tuple[int, ...] = (), network: tuple[int, ...] = ()) -> RuntimeStatus:
    return RuntimeStatus(
        running=bool(virtlogd and libvirtd and socket), uri=URI, netns="vmctl", netns_exists=netns, root="/r",
        pids={"virtlogd": virtlogd, "libvirtd": libvirtd},
        children={"qemu": list(qemu), "network": list(network)}, socket_exists=socket,
    )


def test_start_says_what_it_restarted_and_what_kept_running() -> None:
    done = replace(status(qemu=(30, 31)), started=["virtlogd"], kept={"libvirtd": [20], "qemu": [30, 31]})
    assert start_message(done) == \
        f"restarted virtlogd; libvirtd and 2 guests kept running: {URI} (network namespace vmctl)"
    done = replace(status(qemu=(30,), network=(40,)), started=["virtlogd", "libvirtd"],
                   kept={"qemu": [30], "network": [40]})
    assert start_message(done).startswith("restarted virtlogd and libvirtd; 1 guest and 1 DHCP server kept running")


def test_start_says_whether_it_started_afresh_or_found_it_running() -> None:
    assert start_message(replace(status(), started=["virtlogd", "libvirtd"])) == \
        f"runtime started: {URI} (network namespace vmctl)"
    assert start_message(replace(status(), kept={"virtlogd": [10], "libvirtd": [20]})) == \
        f"runtime already running: {URI} (network namespace vmctl)"


@pytest.mark.parametrize(
    ("found", "text"),
    [
        (status(), "running"),
        (status(None, None, socket=False), "stopped"),
        (status(None, qemu=(30, 31)), "partly running: virtlogd is not running; 'vmctl hypervisor start' "
                                      "starts virtlogd again; libvirtd and 2 guests would keep running"),
        (status(None, None, qemu=(30,)), "partly running: virtlogd and libvirtd are not running; "
                                         "'vmctl hypervisor start' starts virtlogd and libvirtd again; "
                                         "1 guest would keep running"),
        (status(socket=False), "partly running: libvirtd has no socket; 'vmctl hypervisor start' starts libvirtd "
                               "again; virtlogd would keep running"),
    ],
)
def test_status_says_what_is_down_and_what_start_would_do(found: RuntimeStatus, text: str) -> None:
    assert state_text(found) == text


def test_status_of_remains_without_a_namespace_points_to_stop() -> None:
    assert state_text(status(None, None, netns=False, qemu=(30,))).startswith(
        "partly running: the runtime's network namespace vmctl is gone")


def test_the_start_command_prints_what_it_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    done = replace(status(qemu=(30, 31)), started=["virtlogd"], kept={"libvirtd": [20], "qemu": [30, 31]})
    monkeypatch.setattr(api, "hypervisor_start", lambda progress: done)
    result = CliRunner().invoke(main, ["hypervisor", "start"])
    assert result.exit_code == 0 and "restarted virtlogd; libvirtd and 2 guests kept running" in result.output
    json_result = CliRunner().invoke(main, ["hypervisor", "start", "--json"])
    assert '"started": [\n    "virtlogd"\n  ]' in json_result.output
