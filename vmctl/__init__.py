"""vmctl: Docker host VMs on QEMU and libvirt, as a library and a command.

The public API::

    import vmctl
    vmctl.hypervisor_start()          # private libvirtd in an isolated namespace
    vmctl.image_build("debian-12")    # or image_pull
    with vmctl.connect() as hv: ...   # a libvirt connection (resolved URI)

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
from .images import CachedImage
from .proc import CommandResult
from .runtime import RuntimeStatus

__all__ = [
    "CachedImage", "ChecksumError", "CommandResult", "ConfigError", "DownloadError",
    "HypervisorError", "ImageError", "ProbeError", "RuntimeStateError", "RuntimeStatus",
    "VmctlError", "WaitTimeout", "connect", "hypervisor_start", "hypervisor_status",
    "hypervisor_stop", "image_build", "image_list", "image_pull", "image_remove", "resolve_uri",
]
__version__ = "0.1.0"
