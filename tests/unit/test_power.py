"""Stopping a domain, against libvirt's in-memory test driver (test:///default)."""
from typing import Any

import libvirt
import pytest

from vmctl.errors import HypervisorError
from vmctl.hypervisor.driver import Hypervisor


def test_power_off_stops_a_running_domain_and_then_does_nothing() -> None:
    with Hypervisor("test:///default") as hv:
        assert hv.state("test") == "running"  # the test driver's built-in domain
        hv.power_off("test")
        assert hv.state("test") == "shutoff"
        hv.power_off("test")
        assert hv.state("test") == "shutoff"


class _Domain:
    """A domain whose guest powers itself off between isActive() and virDomainDestroy()."""

    def __init__(self, code: int) -> None:
        self.active = [True, False]
        self.code = code

    def isActive(self) -> bool:
        return self.active.pop(0)

    def destroy(self) -> None:
        e = libvirt.libvirtError("domain is not running")
        e.err = (self.code, 0, "Requested operation is not valid: domain is not running", 0, "", None, None, 0, 0)
        raise e


def _hv_with(dom: Any, monkeypatch: pytest.MonkeyPatch) -> Hypervisor:
    hv = Hypervisor("test:///default")
    monkeypatch.setattr(hv, "_domain", lambda name: dom)
    return hv


def test_power_off_of_a_domain_that_just_powered_off_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI saw `image bake` fail here: "stopping e2e-dock failed: ... domain is not running"
    hv = _hv_with(_Domain(libvirt.VIR_ERR_OPERATION_INVALID), monkeypatch)
    hv.power_off("racy")
    hv.close()


class _TransientDomain(_Domain):
    """A transient domain: once its guest powers off, libvirt forgets it."""

    def isActive(self) -> bool:
        if not self.active.pop(0):
            raise libvirt.libvirtError("Domain not found")
        return True


def test_power_off_of_a_transient_domain_that_just_vanished_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    hv = _hv_with(_TransientDomain(libvirt.VIR_ERR_OPERATION_INVALID), monkeypatch)
    hv.power_off("racy")
    hv.close()


def test_power_off_reports_other_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    hv = _hv_with(_Domain(libvirt.VIR_ERR_INTERNAL_ERROR), monkeypatch)
    with pytest.raises(HypervisorError, match="stopping racy failed: Requested operation is not valid"):
        hv.power_off("racy")
    hv.close()
