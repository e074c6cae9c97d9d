"""vmctl: Docker host VMs on QEMU and libvirt, as a library and a command.

The public API::

    import vmctl

    vmctl.hypervisor_start()                  # private libvirtd in an isolated namespace
    vmctl.image_build("debian-12")            # or image_pull
    with vmctl.connect() as host:             # a Host: the resolved libvirt URI
        web = host.up(vmctl.MachineSpec("web", cpus=2, memory_mib=1024))
        print(web.ip, web.run("uname -a").stdout)
        for m in host.list():
            print(m.name, m.state)
        web.down()

Every error derives from :class:`vmctl.VmctlError`; :mod:`vmctl.errors` draws the tree.

This module only re-exports. The exceptions are imported at once (they import
nothing); everything else on first use, so ``import vmctl`` and the CLI's
``--help`` do not pay for libvirt, paramiko and the Docker SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ChecksumError,
    CloudInitError,
    CommandError,
    ConfigError,
    DockerInstallError,
    DownloadError,
    GuestError,
    GuestSetupError,
    HostKeyMismatch,
    HypervisorError,
    ImageError,
    MachineNotRunning,
    MachineStateError,
    MissingDependency,
    NoAddress,
    NoSuchMachine,
    NoSuchSnapshot,
    NotManaged,
    PhaseError,
    PoolError,
    ProbeError,
    RuntimeStateError,
    SSHError,
    SwarmError,
    VmctlError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from ._core.proc import CommandResult
    from .api import (
        connect,
        hypervisor_start,
        hypervisor_status,
        hypervisor_stop,
        image_build,
        image_list,
        image_pull,
        image_remove,
        image_test,
    )
    from .hypervisor.runtime import RuntimeStatus, resolve_uri
    from .images.catalog import CachedImage
    from .machines.host import Host
    from .machines.lifecycle import Timeouts
    from .machines.machine import Machine
    from .model.spec import MachineSpec

# name -> the module that defines it, imported on first access
_LAZY = {
    "connect": ".api", "hypervisor_start": ".api", "hypervisor_status": ".api",
    "hypervisor_stop": ".api", "image_build": ".api", "image_list": ".api", "image_pull": ".api",
    "image_remove": ".api", "image_test": ".api", "resolve_uri": ".hypervisor.runtime",
    "CommandResult": "._core.proc", "RuntimeStatus": ".hypervisor.runtime",
    "CachedImage": ".images.catalog", "Host": ".machines.host", "Timeouts": ".machines.lifecycle",
    "Machine": ".machines.machine", "MachineSpec": ".model.spec",
}

__all__ = [
    "CachedImage", "ChecksumError", "CloudInitError", "CommandError", "CommandResult", "ConfigError",
    "DockerInstallError", "DownloadError", "GuestError", "GuestSetupError", "Host", "HostKeyMismatch",
    "HypervisorError",
    "ImageError", "Machine", "MachineNotRunning", "MachineSpec", "MachineStateError",
    "MissingDependency", "NoAddress", "NoSuchMachine", "NoSuchSnapshot", "NotManaged", "PhaseError", "PoolError",
    "ProbeError", "RuntimeStateError", "RuntimeStatus", "SSHError", "SwarmError", "Timeouts",
    "VmctlError", "WaitTimeout", "connect", "hypervisor_start", "hypervisor_status",
    "hypervisor_stop", "image_build", "image_list", "image_pull", "image_remove", "image_test",
    "resolve_uri",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """PEP 562: load a re-exported name's module the first time it is asked for."""
    if (module := _LAZY.get(name)) is None:
        raise AttributeError(f"module 'vmctl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
