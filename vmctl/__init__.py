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

Every error derives from :class:`vmctl.VmctlError`.
"""

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
    resolve_uri,
)
from .errors import (
    ChecksumError,
    ConfigError,
    DownloadError,
    HypervisorError,
    ImageError,
    ProbeError,
    RuntimeStateError,
    VmctlError,
    WaitTimeout,
)
from .guest import HostKeyMismatch, SSHError
from .host import Host
from .images import CachedImage
from .lifecycle import PhaseError, Timeouts
from .machine import Machine
from .proc import CommandResult
from .runtime import RuntimeStatus
from .spec import MachineSpec

__all__ = [
    "CachedImage", "ChecksumError", "CommandResult", "ConfigError", "DownloadError", "Host",
    "HostKeyMismatch", "HypervisorError", "ImageError", "Machine", "MachineSpec", "PhaseError",
    "ProbeError", "RuntimeStateError", "RuntimeStatus", "SSHError", "Timeouts", "VmctlError",
    "WaitTimeout", "connect", "hypervisor_start", "hypervisor_status", "hypervisor_stop",
    "image_build", "image_list", "image_pull", "image_remove", "image_test", "resolve_uri",
]
__version__ = "0.1.0"
