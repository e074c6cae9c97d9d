"""plan_start: what `hypervisor start` starts, for each state the runtime can be found in.
A pure function of the status: nothing runs here."""

from __future__ import annotations

import pytest

from vmctl.errors import RuntimeStateError
from vmctl.hypervisor.runtime import RuntimeStatus, StartPlan, plan_start


def status(virtlogd: int | None = None, libvirtd: int | None = None, socket: bool = False,
           netns: bool = True, qemu: tuple[int, ...] = (), network: tuple[int, ...] = ()) -> RuntimeStatus:
    return RuntimeStatus(
        running=bool(virtlogd and libvirtd and socket), uri="qemu:///system?socket=/s", netns="vmctl",
        netns_exists=netns, root="/r", pids={"virtlogd": virtlogd, "libvirtd": libvirtd},
        children={"qemu": list(qemu), "network": list(network)}, socket_exists=socket,
    )


@pytest.mark.parametrize(
    ("found", "plan"),
    [
        # it runs: nothing to do
        (status(10, 20, socket=True, qemu=(30,), network=(40,)),
         StartPlan(kept={"virtlogd": [10], "libvirtd": [20], "qemu": [30], "network": [40]})),
        # nothing left (stale files and namespace or not): a fresh start
        (status(), StartPlan(fresh=True, start=("virtlogd", "libvirtd"))),
        (status(netns=False, socket=True), StartPlan(fresh=True, start=("virtlogd", "libvirtd"))),
        # virtlogd died: it alone
        (status(None, 20, socket=True, qemu=(30, 31), network=(40,)),
         StartPlan(start=("virtlogd",), kept={"libvirtd": [20], "qemu": [30, 31], "network": [40]})),
        # libvirtd died (its socket file may stay): it alone, it re-attaches to the guests
        (status(10, None, socket=True, qemu=(30,)),
         StartPlan(start=("libvirtd",), kept={"virtlogd": [10], "qemu": [30]})),
        (status(10, None, qemu=(30,)), StartPlan(start=("libvirtd",), kept={"virtlogd": [10], "qemu": [30]})),
        (status(10, None), StartPlan(start=("libvirtd",), kept={"virtlogd": [10]})),
        # both died, guests or DHCP servers still run: both daemons, the rest kept
        (status(qemu=(30,)), StartPlan(start=("virtlogd", "libvirtd"), kept={"qemu": [30]})),
        (status(network=(40,)), StartPlan(start=("virtlogd", "libvirtd"), kept={"network": [40]})),
        # libvirtd runs but serves nothing: restarted alone
        (status(10, 20, qemu=(30,)),
         StartPlan(stop=("libvirtd",), start=("libvirtd",), kept={"virtlogd": [10], "qemu": [30]})),
        (status(None, 20, qemu=(30,)),
         StartPlan(stop=("libvirtd",), start=("virtlogd", "libvirtd"), kept={"qemu": [30]})),
    ],
)
def test_start_starts_only_what_is_missing(found: RuntimeStatus, plan: StartPlan) -> None:
    assert plan_start(found) == plan


def test_a_plan_never_stops_a_guest_or_virtlogd() -> None:
    for found in (status(None, 20, qemu=(30,)), status(10, 20, qemu=(30,)), status(10, None, qemu=(30,))):
        plan = plan_start(found)
        assert set(plan.stop) <= {"libvirtd"} and not plan.fresh and plan.kept["qemu"] == [30]


@pytest.mark.parametrize("found", [status(netns=False, qemu=(30,)), status(10, None, netns=False),
                                   status(None, 20, socket=True, netns=False)])
def test_remains_of_a_runtime_whose_namespace_is_gone_are_refused(found: RuntimeStatus) -> None:
    """A daemon started in a new namespace would not see the guests' network; stop, then start."""
    with pytest.raises(RuntimeStateError, match="namespace vmctl is gone") as caught:
        plan_start(found)
    assert "hypervisor stop" in caught.value.hint
