"""The libvirt adapter: the only module that imports ``libvirt``.

libvirt errors are translated into :class:`HypervisorError` at this boundary.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import HypervisorError, NoSuchMachine, NoSuchSnapshot

try:
    import libvirt
except ImportError as _e:  # pragma: no cover - exercised only without the package
    raise ImportError(
        "vmctl needs libvirt-python: pip install libvirt-python (needs libvirt-dev, pkg-config)"
    ) from _e


def _quiet(_ctx: Any, _err: Any) -> None:
    """libvirt prints every error to stderr unless a handler is set."""


libvirt.registerErrorHandler(_quiet, None)

STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting-down",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",  # the guest's own S3 sleep
}
SUSPENDED = "suspended"  # off, with its memory saved by libvirt's managed save: a start resumes it


# libvirt's lifecycle events in vmctl's words: (event, detail) first, then the event alone.
# A managed save is "suspended" and its restore "resumed", as `vmctl suspend/resume` say;
# libvirt's own pause (SUSPENDED/RESUMED) is "paused"/"unpaused".
_E = libvirt
EVENTS: dict[tuple[int, int | None], str] = {
    (_E.VIR_DOMAIN_EVENT_DEFINED, None): "defined",
    (_E.VIR_DOMAIN_EVENT_UNDEFINED, None): "removed",
    (_E.VIR_DOMAIN_EVENT_STARTED, _E.VIR_DOMAIN_EVENT_STARTED_RESTORED): "resumed",
    (_E.VIR_DOMAIN_EVENT_STARTED, None): "started",
    (_E.VIR_DOMAIN_EVENT_SUSPENDED, None): "paused",
    (_E.VIR_DOMAIN_EVENT_RESUMED, None): "unpaused",
    (_E.VIR_DOMAIN_EVENT_STOPPED, _E.VIR_DOMAIN_EVENT_STOPPED_SAVED): "suspended",
    (_E.VIR_DOMAIN_EVENT_STOPPED, _E.VIR_DOMAIN_EVENT_STOPPED_CRASHED): "crashed",
    (_E.VIR_DOMAIN_EVENT_STOPPED, _E.VIR_DOMAIN_EVENT_STOPPED_FAILED): "crashed",
    (_E.VIR_DOMAIN_EVENT_STOPPED, None): "stopped",
    (_E.VIR_DOMAIN_EVENT_SHUTDOWN, None): "shutting-down",
    (_E.VIR_DOMAIN_EVENT_PMSUSPENDED, None): "pmsuspended",
    (_E.VIR_DOMAIN_EVENT_CRASHED, None): "crashed",
}
_DETAILS = {  # libvirt's detail names, for the JSON (VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN -> "shutdown")
    getattr(_E, f"VIR_DOMAIN_EVENT_{event}"): {
        getattr(_E, n): n.split("_", 4)[-1].lower() for n in dir(_E) if n.startswith(f"VIR_DOMAIN_EVENT_{event}_")}
    for event in ("DEFINED", "UNDEFINED", "STARTED", "SUSPENDED", "RESUMED", "STOPPED", "SHUTDOWN", "PMSUSPENDED",
                  "CRASHED")
}


@dataclass(frozen=True)
class Volume:
    """A storage volume: its name in the pool, its path and size on the hypervisor."""

    name: str
    path: str
    capacity: int  # bytes: a qcow2's virtual size


def event_name(event: int, detail: int) -> str:
    """vmctl's word for a libvirt lifecycle event."""
    return EVENTS.get((event, detail)) or EVENTS.get((event, None), f"event-{event}")


@dataclass(frozen=True)
class DomainEvent:
    """One lifecycle event of a domain, as libvirt reported it."""

    time: float  # seconds since the epoch, when vmctl received it
    name: str
    event: str  # vmctl's word (EVENTS)
    detail: str  # libvirt's detail, e.g. "booted", "shutdown", "destroyed", "saved"


_loop_lock = threading.Lock()
_loop_started = False


def _start_event_loop() -> None:
    """libvirt's default event loop, run in a daemon thread; once per process, before the
    connection that listens opens (libvirt's rule)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _loop_started = True


class EventStream:
    """Every domain's lifecycle events on a libvirt host, as they happen: iterate over it,
    and close it (or use it as a context manager) when done. It listens from the moment it
    is made; a lost connection (libvirtd gone) ends the iteration with :class:`HypervisorError`."""

    def __init__(self, uri: str) -> None:
        _start_event_loop()
        self.uri = uri
        try:
            self._conn = libvirt.open(uri)
        except libvirt.libvirtError as e:
            raise HypervisorError(f"cannot connect to libvirt at {uri}: {_message(e)}",
                                  hint="start vmctl's runtime with 'vmctl hypervisor start', or check --connect") from e
        self._found: queue.Queue[DomainEvent | None] = queue.Queue()
        try:
            with suppress(libvirt.libvirtError):  # (drivers without a daemon have no keepalive)
                self._conn.setKeepAlive(5, 3)  # a libvirtd that died is noticed within 20 s
            self._conn.registerCloseCallback(self._on_close, None)
            self._callback = self._conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)
        except libvirt.libvirtError as e:
            self._conn.close()
            raise HypervisorError(f"listening for events on {uri} failed: {_message(e)}") from e
        self._closed = False

    def _on_event(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        words = _DETAILS.get(event, {})
        self._found.put(DomainEvent(time.time(), str(dom.name()), event_name(event, detail),
                                    words.get(detail, str(detail))))

    def _on_close(self, _conn: Any, _reason: int, _opaque: Any) -> None:
        self._found.put(None)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> DomainEvent:
        if self._closed:
            raise StopIteration
        item = self._found.get()
        if item is None:
            self.close()
            raise HypervisorError(f"lost the connection to libvirt at {self.uri}",
                                  hint="check the runtime with 'vmctl hypervisor status'")
        return item

    def get(self, timeout: float) -> DomainEvent | None:
        """The next event, or None if none came within ``timeout`` seconds."""
        try:
            item = self._found.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is None:
            self._found.put(None)  # __next__ reports the lost connection
        return item

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with suppress(libvirt.libvirtError):  # the connection is gone already
            self._conn.domainEventDeregisterAny(self._callback)
            self._conn.unregisterCloseCallback()
        with suppress(libvirt.libvirtError):
            self._conn.close()


@dataclass(frozen=True)
class HostInfo:
    uri: str
    hypervisor: str
    hypervisor_version: str
    libvirt_version: str
    domain_types: tuple[str, ...]


def _version(number: int) -> str:
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _active(dom: libvirt.virDomain) -> bool:
    """Whether the domain runs; a transient one that stopped is gone, so not active."""
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError:
        return False


@dataclass(frozen=True)
class NetworkInfo:
    """A libvirt network as :meth:`Hypervisor.networks` finds it."""

    name: str
    bridge: str
    cidrs: tuple[str, ...]  # its IPv4 addresses, as ADDRESS/PREFIX (or ADDRESS/NETMASK)


def _message(e: libvirt.libvirtError) -> str:
    return (e.get_error_message() or str(e)).strip()


class Hypervisor:
    """An open libvirt connection. Use as a context manager, or call close()."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            self._conn = libvirt.open(uri)
        except libvirt.libvirtError as e:
            raise HypervisorError(
                f"cannot connect to libvirt at {uri}: {_message(e)}",
                hint="start vmctl's runtime with 'vmctl hypervisor start', or check --connect",
            ) from e

    def __enter__(self) -> Hypervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None:
            raise HypervisorError(f"connection to {self.uri} is closed")
        return self._conn

    def info(self) -> HostInfo:
        caps = ET.fromstring(self.conn.getCapabilities())
        types = sorted({d.get("type", "") for d in caps.iter("domain")})
        return HostInfo(
            uri=self.conn.getURI(),
            hypervisor=self.conn.getType(),
            hypervisor_version=_version(self.conn.getVersion()),
            libvirt_version=_version(self.conn.getLibVersion()),
            domain_types=tuple(types),
        )

    # networks ---------------------------------------------------------------

    def ensure_network(self, name: str, xml: str) -> bool:
        """Define (if missing), autostart and start network ``name``; True if it was created."""
        created = False
        try:
            net = self.conn.networkLookupByName(name)
        except libvirt.libvirtError:
            net = self._call(self.conn.networkDefineXML, xml, what=f"defining network {name}")
            created = True
        if not net.isActive():
            self._call(net.create, what=f"starting network {name}")
        if not net.autostart():
            net.setAutostart(1)
        return created

    def remove_network(self, name: str) -> bool:
        """Stop and undefine network ``name``; False if there is none."""
        try:
            net = self.conn.networkLookupByName(name)
        except libvirt.libvirtError:
            return False
        if net.isActive():
            self._call(net.destroy, what=f"stopping network {name}")
        self._call(net.undefine, what=f"removing network {name}")
        return True

    def network_active(self, name: str) -> bool:
        try:
            return bool(self.conn.networkLookupByName(name).isActive())
        except libvirt.libvirtError:
            return False

    def network_leases(self, name: str) -> list[dict[str, Any]]:
        try:
            return list(self.conn.networkLookupByName(name).DHCPLeases())
        except libvirt.libvirtError as e:
            raise HypervisorError(f"reading DHCP leases of network {name}: {_message(e)}") from e

    # storage ----------------------------------------------------------------

    def ensure_storage_pool(self, name: str, xml: str) -> bool:
        """Define, build, autostart and start storage pool ``name``; True if created."""
        created = False
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            pool = self._call(self.conn.storagePoolDefineXML, xml, 0, what=f"defining pool {name}")
            self._call(pool.build, 0, what=f"building pool {name}")
            created = True
        if not pool.isActive():
            self._call(pool.create, 0, what=f"starting pool {name}")
        if not pool.autostart():
            pool.setAutostart(1)
        return created

    def storage_pool_path(self, name: str) -> str | None:
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return None
        return ET.fromstring(pool.XMLDesc()).findtext("target/path")

    def storage_pool_free(self, name: str) -> int | None:
        """Bytes free where storage pool ``name`` keeps its volumes; None if there is no such pool."""
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError:
            return None
        return int(self._call(pool.info, what=f"reading storage pool {name}")[3])

    def _pool(self, name: str) -> libvirt.virStoragePool:
        try:
            pool = self.conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as e:
            raise HypervisorError(f"storage pool {name!r} on {self.uri}: {_message(e)}",
                                  hint=f"'vmctl hypervisor start', or 'vmctl doctor --connect {self.uri}'") from e
        return pool

    def volume(self, pool: str, name: str) -> Volume | None:
        """Volume ``name`` of ``pool`` as the hypervisor sees it now (the pool is refreshed
        first: files may have come and gone under libvirt), or None."""
        p = self._pool(pool)
        self._call(p.refresh, 0, what=f"refreshing storage pool {pool}")
        if (vol := self._volume_in(p, pool, name)) is None:
            return None
        _type, capacity, _allocation = self._call(vol.info, what=f"reading volume {name}")
        return Volume(name, str(vol.path()), int(capacity))

    @staticmethod
    def _volume_in(p: libvirt.virStoragePool, pool: str, name: str) -> libvirt.virStorageVol | None:
        """Volume ``name`` of pool ``p``; None only when libvirt says there is no such volume."""
        try:
            return p.storageVolLookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return None
            raise HypervisorError(f"looking up volume {name} of pool {pool}: {_message(e)}") from e

    def create_volume(self, pool: str, xml: str) -> str:
        """Create a volume from ``xml`` in ``pool`` (libvirt makes the file on its host); its path."""
        vol = self._call(self._pool(pool).createXML, xml, 0, what=f"creating a volume in pool {pool}")
        return str(vol.path())

    def delete_volume(self, pool: str, name: str) -> str | None:
        """Delete volume ``name`` of ``pool``; its path, or None when there is none."""
        p = self._pool(pool)
        with suppress(libvirt.libvirtError):
            p.refresh(0)
        if (vol := self._volume_in(p, pool, name)) is None:
            return None
        path = str(vol.path())
        self._call(vol.delete, 0, what=f"deleting volume {name} of pool {pool}")
        return path

    def resize_volume(self, path: str, size_bytes: int) -> None:
        """Grow the volume at ``path`` (of any pool) to ``size_bytes``; its VM is not running."""
        try:
            vol = self.conn.storageVolLookupByPath(path)
        except libvirt.libvirtError:
            for pool in self.conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
                with suppress(libvirt.libvirtError):
                    pool.refresh(0)  # a file made beside libvirt (a VM older than vmctl's volumes)
            vol = self._call(self.conn.storageVolLookupByPath, path, what=f"finding the volume at {path}")
        self._call(vol.resize, size_bytes, 0, what=f"growing {path.rsplit('/', 1)[-1]}")

    def upload_volume(self, pool: str, name: str, source: BinaryIO, size: int,
                      sent: Callable[[int], None] = lambda _n: None) -> None:
        """Fill volume ``name`` with ``size`` bytes read from ``source`` (libvirt's volume
        upload: a stream over the connection, so the hypervisor may be another machine)."""
        vol = self._call(self._pool(pool).storageVolLookupByName, name, what=f"finding volume {name}")
        stream = self.conn.newStream(0)
        done = [0]

        def chunk(_stream: Any, nbytes: int, _opaque: Any) -> bytes:
            data = source.read(min(nbytes, 1 << 20))
            done[0] += len(data)
            sent(done[0])
            return data

        try:
            self._call(vol.upload, stream, 0, size, 0, what=f"uploading {name}")
            self._call(stream.sendAll, chunk, None, what=f"uploading {name}")
            self._call(stream.finish, what=f"uploading {name}")
        except BaseException:
            with suppress(libvirt.libvirtError):
                stream.abort()
            raise

    def volume_sha256(self, pool: str, name: str) -> str:
        """The SHA-256 of volume ``name``'s bytes, read back through libvirt's volume download."""
        vol = self._call(self._pool(pool).storageVolLookupByName, name, what=f"finding volume {name}")
        stream, digest = self.conn.newStream(0), hashlib.sha256()
        try:
            self._call(vol.download, stream, 0, 0, 0, what=f"reading back {name}")
            self._call(stream.recvAll, lambda _s, data, _o: digest.update(data), None, what=f"reading back {name}")
            self._call(stream.finish, what=f"reading back {name}")
        except BaseException:
            with suppress(libvirt.libvirtError):
                stream.abort()
            raise
        return digest.hexdigest()

    # domains ----------------------------------------------------------------

    def define(self, xml: str) -> str:
        dom = self._call(self.conn.defineXML, xml, what="defining the domain")
        return str(dom.name())

    def create_transient(self, xml: str) -> str:
        """Create and start a domain that vanishes when it stops."""
        dom = self._call(self.conn.createXML, xml, 0, what="starting a transient domain")
        return str(dom.name())

    def start(self, name: str) -> None:
        self._call(self._domain(name).create, what=f"starting {name}")

    def power_off(self, name: str) -> None:
        """Hard stop; a domain that is off, or goes off meanwhile, is left as it is."""
        dom = self._domain(name)
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as e:
            # a guest that powered itself off between isActive() and destroy()
            if e.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and not _active(dom):
                return
            raise HypervisorError(f"stopping {name} failed: {_message(e)}") from e

    def undefine(self, name: str) -> None:
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)  # (internal snapshots go with the disk)
        self._call(self._domain(name).undefineFlags, flags, what=f"undefining {name}")

    def managed_save(self, name: str) -> None:
        """Save the running domain's memory to disk and stop it; the next start restores it."""
        self._call(self._domain(name).managedSave, 0, what=f"saving the state of {name}")

    # snapshots ---------------------------------------------------------------------

    def disk_targets(self, name: str) -> list[tuple[str, bool]]:
        """Each disk's target (``vda``) and whether it is read-only."""
        root = ET.fromstring(self.xml(name))
        return [(str(disk.find("target").get("dev")), disk.find("readonly") is not None)  # type: ignore[union-attr]
                for disk in root.findall("devices/disk") if disk.find("target") is not None]

    def snapshot_create(self, name: str, xml: str) -> None:
        self._call(self._domain(name).snapshotCreateXML, xml, 0, what=f"taking a snapshot of {name}")

    def snapshots(self, name: str) -> list[dict[str, Any]]:
        """The domain's snapshots, oldest first: name, created (epoch seconds), state (the
        domain's when it was taken), memory (whether it holds it), current, description."""
        found = []
        for snap in self._call(self._domain(name).listAllSnapshots, 0, what=f"listing {name}'s snapshots"):
            root = ET.fromstring(snap.getXMLDesc(0))
            memory = root.find("memory")
            found.append({
                "name": root.findtext("name", ""), "created": int(root.findtext("creationTime", "0")),
                "state": root.findtext("state", ""),
                "memory": memory is not None and memory.get("snapshot") == "internal",
                "current": bool(snap.isCurrent(0)), "description": root.findtext("description", ""),
            })
        return sorted(found, key=lambda s: (s["created"], s["name"]))

    def snapshot_revert(self, name: str, snapshot: str) -> None:
        self._call(self._domain(name).revertToSnapshot, self._snapshot(name, snapshot), 0,
                   what=f"reverting {name} to {snapshot}")

    def snapshot_delete(self, name: str, snapshot: str) -> None:
        self._call(self._snapshot(name, snapshot).delete, 0, what=f"deleting snapshot {snapshot} of {name}")

    def _snapshot(self, name: str, snapshot: str) -> libvirt.virDomainSnapshot:
        try:
            return self._domain(name).snapshotLookupByName(snapshot, 0)
        except libvirt.libvirtError as e:
            raise NoSuchSnapshot(name, snapshot) from e

    # resources ---------------------------------------------------------------------

    def set_vcpus(self, name: str, cpus: int) -> None:
        """vCPUs from the next boot (the domain's configuration, its maximum too)."""
        dom, config = self._domain(name), libvirt.VIR_DOMAIN_AFFECT_CONFIG
        steps = [(cpus, config | libvirt.VIR_DOMAIN_VCPU_MAXIMUM), (cpus, config)]
        for count, flags in steps if cpus >= self._config_vcpus(dom) else reversed(steps):
            self._call(dom.setVcpusFlags, count, flags, what=f"setting {name}'s vCPUs to {cpus}")

    @staticmethod
    def _config_vcpus(dom: libvirt.virDomain) -> int:
        return int(dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG))

    def set_memory(self, name: str, mib: int, live: bool) -> None:
        """Memory from the next boot; with ``live``, also now, through the balloon (only
        down to it, or back up to what the VM booted with)."""
        dom, config = self._domain(name), libvirt.VIR_DOMAIN_AFFECT_CONFIG
        kib = mib * 1024
        steps = [(kib, config | libvirt.VIR_DOMAIN_MEM_MAXIMUM), (kib, config)]
        growing = kib >= int(ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext("memory", "0"))
        for size, flags in steps if growing else reversed(steps):
            self._call(dom.setMemoryFlags, size, flags, what=f"setting {name}'s memory to {mib} MiB")
        if live:
            self._call(dom.setMemoryFlags, kib, libvirt.VIR_DOMAIN_AFFECT_LIVE,
                       what=f"setting {name}'s memory to {mib} MiB now")

    def max_memory_mib(self, name: str) -> int:
        """The memory the running VM booted with: its balloon's ceiling."""
        return int(self._domain(name).maxMemory()) // 1024

    def resize_disk_live(self, name: str, target: str, size_bytes: int) -> None:
        self._call(self._domain(name).blockResize, target, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES,
                   what=f"growing {name}'s disk {target}")

    # -------------------------------------------------------------------------------

    def autostart(self, name: str) -> bool:
        return bool(self._call(self._domain(name).autostart, what=f"reading {name}'s autostart flag"))

    def set_autostart(self, name: str, on: bool) -> None:
        self._call(self._domain(name).setAutostart, int(on), what=f"setting {name}'s autostart flag")

    def exists(self, name: str) -> bool:
        try:
            self.conn.lookupByName(name)
        except libvirt.libvirtError:
            return False
        return True

    def state(self, name: str) -> str:
        dom = self._domain(name)
        state, _reason = dom.state()
        if state == libvirt.VIR_DOMAIN_SHUTOFF and dom.hasManagedSaveImage(0):
            return SUSPENDED
        return STATES.get(state, "unknown")

    def domains(self) -> Iterator[str]:
        for dom in self.conn.listAllDomains(0):
            yield str(dom.name())

    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (guest agent, else ACPI); returns at once."""
        dom = self._domain(name)
        if dom.isActive():
            flags = libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
            self._call(dom.shutdownFlags, flags, what=f"shutting down {name}")

    def set_metadata(self, name: str, namespace: str, key: str, element: str) -> None:
        """Store ``element`` (XML) as the domain's metadata in ``namespace``, live and persistent."""
        dom = self._domain(name)
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if dom.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        self._call(dom.setMetadata, libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, key, namespace, flags,
                   what=f"recording metadata of {name}")

    def metadata(self, name: str, namespace: str) -> str | None:
        """The domain's metadata element in ``namespace``, or None if it has none."""
        try:
            return str(self._domain(name).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, namespace))
        except libvirt.libvirtError:
            return None

    def networks(self) -> list[NetworkInfo]:
        """Every network of the host (active or not): its bridge and IPv4 subnets."""
        found = []
        for net in self._call(self.conn.listAllNetworks, 0, what="listing networks"):
            root = ET.fromstring(self._call(net.XMLDesc, 0, what=f"reading network {net.name()}"))
            bridge = root.find("bridge")
            cidrs = []
            for ip in root.findall("ip"):
                if ip.get("family", "ipv4") == "ipv4" and (address := ip.get("address")):
                    mask = ip.get("prefix") or ip.get("netmask") or "24"
                    cidrs.append(f"{address}/{mask}")
            found.append(NetworkInfo(net.name(), bridge.get("name", "") if bridge is not None else "", tuple(cidrs)))
        return found

    def network_bridge(self, name: str) -> str | None:
        """The host bridge network ``name`` runs on, or None if there is no such network."""
        try:
            return str(self.conn.networkLookupByName(name).bridgeName())
        except libvirt.libvirtError:
            return None

    def leases(self, network: str, mac: str) -> list[dict[str, Any]]:
        """The network's IPv4 DHCP leases for ``mac`` (libvirt's fields: ``ipaddr``, ``clientid``, ...):
        more than one when the guest came back with another client ID (a new machine-id)."""
        return [lease for lease in self.network_leases(network)
                if lease.get("mac", "").lower() == mac.lower() and lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4]

    def lease(self, network: str, mac: str) -> dict[str, Any] | None:
        """The network's newest IPv4 DHCP lease for ``mac`` (:func:`newest_lease`)."""
        return newest_lease(self.leases(network, mac))

    def lease_address(self, network: str, mac: str) -> str | None:
        """The IPv4 address the network's DHCP server leased to ``mac``."""
        lease = self.lease(network, mac)
        return str(lease["ipaddr"]) if lease else None

    def guest_address(self, name: str, mac: str) -> str | None:
        """The address of ``mac`` as the guest agent, then the ARP table, report it."""
        dom = self._domain(name)
        sources = (libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP)
        for source in sources:
            try:
                interfaces = dom.interfaceAddresses(source, 0)
            except libvirt.libvirtError:
                continue
            for iface in interfaces.values():
                if (iface.get("hwaddr") or "").lower() != mac.lower():
                    continue
                for addr in iface.get("addrs") or []:
                    if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4:
                        return str(addr["addr"])
        return None

    def host_limits(self) -> tuple[int, int]:
        """(CPUs, memory in MiB) of the hypervisor host."""
        info = self.conn.getInfo()
        return int(info[2]), int(info[1])

    def xml(self, name: str) -> str:
        return str(self._domain(name).XMLDesc(0))

    def _domain(self, name: str) -> libvirt.virDomain:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as e:
            raise NoSuchMachine(name, self.uri) from e

    @staticmethod
    def _call(fn: Any, *args: Any, what: str) -> Any:
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            raise HypervisorError(f"{what} failed: {_message(e)}") from e


def newest_lease(leases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The lease granted last: the one that expires last (one lease time for all). A VM
    that came back with a new client ID (a baked VM started again has a new machine-id)
    has its old lease too, for an address nothing answers on any more."""
    return max(leases, key=lambda lease: int(lease.get("expirytime") or 0), default=None)
