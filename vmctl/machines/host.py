"""A hypervisor host as vmctl sees it: a libvirt URI, its VMs, and where their files live."""

from __future__ import annotations

import builtins
import shlex
from collections.abc import Iterator
from pathlib import Path

from .._core.locks import file_lock, is_held
from .._core.paths import machines_dir, private_machines_dir, state_dir
from .._core.proc import run
from .._core.progress import NoProgress, Progress
from ..errors import HypervisorError, NoSuchMachine, NotManaged, VmctlError
from ..guest.keys import client_key
from ..guest.ssh import Jump
from ..hypervisor import accel
from ..hypervisor.driver import EventStream, Hypervisor
from ..hypervisor.runtime import Runtime, resolve_uri
from ..hypervisor.xml import network_xml
from ..model.record import METADATA_NS, Record
from ..model.spec import DEFAULT_NETWORK, MachineSpec, NetworkChoice, NetworkSpec, check_name
from ..model.uri import JumpHost, is_remote
from . import forwarder
from .lifecycle import Timeline, Timeouts, up
from .machine import FILE_SUFFIXES, Machine
from .storage import Storage, prepare_pools


def prepare_host(hv: Hypervisor, network: NetworkSpec = DEFAULT_NETWORK) -> None:
    """Make sure the network and storage pools vmctl's VMs use exist and are active."""
    private_machines_dir()
    hv.ensure_network(network.name, network_xml(network))
    prepare_pools(hv)




class Host:
    """An open connection to a libvirt host, with vmctl's view of its VMs.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, uri: str | None = None) -> None:
        self.uri = resolve_uri(uri)
        runtime = Runtime()
        self.netns = runtime.netns if self.uri == runtime.uri else None
        self.hv = Hypervisor(self.uri)
        self.dir = machines_dir()
        self._client_key: Path | None = None
        self._jump: Jump | None = None

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._jump is not None:
            self._jump.close()
        self.hv.close()

    @property
    def jump(self) -> Jump | None:
        """The remote hypervisor's sshd, through which its guests are reached (None here)."""
        if self._jump is None and is_remote(self.uri):
            self._jump = Jump(JumpHost.from_uri(self.uri))
        return self._jump

    def command(self, argv: builtins.list[str], what: str, timeout: float = 60) -> str:
        """Run ``argv`` on the hypervisor host (as root): in vmctl's runtime's network namespace,
        on this machine, or over the remote host's sshd (a remote URI without one is refused
        by :attr:`jump`); its output. A failure is a :class:`HypervisorError` naming ``what``
        and the host."""
        if self.jump is not None:
            rc, out, err = self.jump.run(shlex.join(argv), timeout)
            if rc != 0:
                raise HypervisorError(f"{what} on {self.uri} failed (exit {rc}): {err.strip() or out.strip()}",
                                      hint=f"run it there by hand to see why: {shlex.join(argv)}")
            return out
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        return run([*prefix, *argv], what=what, timeout=timeout).stdout

    def accelerator(self, progress: Progress = NoProgress()) -> str:
        """``kvm`` or ``tcg`` for this host's VMs: found by booting a kernel, here or on the
        remote host itself (:func:`vmctl.hypervisor.accel.decide_remote`), and kept."""
        if self.jump is None:
            return accel.accelerator(progress)
        return self.remote_verdict(progress=progress).accel

    def remote_verdict(self, reprobe: bool = False, progress: Progress = NoProgress()) -> accel.Verdict:
        """The remote host's accelerator verdict (a probe kernel uploaded there if it runs)."""
        assert self.jump is not None, "only a remote host"
        return accel.decide_remote(self.uri, self.jump.run, Storage(self.hv, progress).probe_kernel, reprobe,
                                   progress)

    @property
    def client_key(self) -> Path:
        """vmctl's SSH client key (created on first use)."""
        if self._client_key is None:
            self._client_key, _ = client_key(state_dir() / "ssh")
        return self._client_key

    def client_public_key(self) -> str:
        return client_key(state_dir() / "ssh")[1]

    def file(self, name: str, suffix: str) -> Path:
        """The VM's file ``NAME.SUFFIX`` in the machines directory; a name that is not a
        valid VM name (``../x``, ``a/b``, ``x\\n``) is refused before any path is made."""
        return self.dir / f"{check_name(name, 'VM name')}.{suffix}"

    def record(self, name: str) -> Record | None:
        element = self.hv.metadata(name, METADATA_NS)
        return Record.from_element(element, name) if element else None

    def get(self, name: str) -> Machine:
        """The vmctl VM called ``name``; a :class:`ConfigError` if there is none."""
        check_name(name, "VM name")
        if not self.hv.exists(name):
            raise NoSuchMachine(name, self.uri)
        record = self.record(name)
        if record is None:
            raise NotManaged(name, self.uri)
        return Machine(self, name, record)

    def list(self) -> list[Machine]:
        """Every VM vmctl manages on this host, by name."""
        return sorted(self._machines(), key=lambda m: m.name)

    def _machines(self) -> Iterator[Machine]:
        for name in self.hv.domains():
            if (record := self.record(name)) is not None:
                yield Machine(self, name, record)

    def events(self) -> EventStream:
        """Every VM's lifecycle events on this host as they happen (defined, started, stopped,
        suspended, resumed, crashed, removed...): iterate, and close it when done::

            with host.events() as events:
                for event in events:
                    print(event.name, event.event)
        """
        return EventStream(self.uri)

    def start_autostart(self, progress: Progress = NoProgress()) -> builtins.list[str]:
        """Start the VMs marked autostart that are not running (resume the suspended ones),
        wait for their SSH, and start the forwarder of each that needs one; returns their
        names. (libvirtd may have started some itself, when it started afresh.) One VM
        that fails does not keep the others from starting: every one is tried, then the
        first failure is raised, naming them all."""
        started, failed = [], {}
        for machine in self.list():
            if not machine.autostart:
                continue
            forwarding = not machine.needs_forwarder or machine.forwarder().get("state") == "running"
            if machine.state == "running" and forwarding:
                continue
            progress.phase(f"starting {machine.name} (autostart)")
            try:
                machine.start()
                started.append(machine.name)
            except VmctlError as e:
                failed[machine.name] = e
            finally:
                machine.close()
        if failed:
            name, error = next(iter(failed.items()))
            raise HypervisorError(f"the runtime runs, but {', '.join(failed)} (autostart) did not start: "
                                  f"{name}: {error.message}", hint=error.hint or f"'vmctl start {name}'")
        return started

    def exists(self, name: str) -> bool:
        """Whether anything of VM ``name`` is here: its domain, files an interrupted run left,
        or an ``up`` that holds its lock and has made nothing yet (a ``down`` waits for it)."""
        return (self.hv.exists(name) or any(self.file(name, suffix).exists() for suffix in FILE_SUFFIXES[:-1])
                or is_held(self.file(name, "lock")))

    def delete_unlocked(self, name: str) -> builtins.list[str]:
        """Power off, undefine and delete everything of VM ``name``; returns what was removed.

        The caller holds the VM's lock (or knows nothing else can touch it): see :meth:`delete`."""
        check_name(name, "VM name")
        removed = []
        forwarder.stop(self.dir, name)
        if self.hv.exists(name):
            record = self.record(name)
            if record is None:
                raise NotManaged(name, self.uri)
            leases = self._leases(record)
            self.hv.power_off(name)
            # before undefine: a down killed in between still knows the MAC
            removed += [f"DHCP lease {lease[1]}" for lease in leases if self._release(lease)]
            self.hv.undefine(name)
            removed.append(f"domain {name}")
        removed += Storage(self.hv).remove(name)
        for suffix in FILE_SUFFIXES:
            path = self.file(name, suffix)
            if path.exists():
                path.unlink()
                removed.append(str(path))
        return removed

    def _leases(self, record: Record) -> builtins.list[builtins.list[str]]:
        """``dhcp_release``'s arguments for each of the VM's leases on vmctl's runtime: bridge,
        address, MAC and the client ID the guest used (dnsmasq matches on it; a guest whose
        machine-id was reset, as a bake does, came back with another one and another lease)."""
        net = NetworkChoice.parse(record.spec.network)
        if self.netns is None or net.kind != "network":
            return []
        if not (bridge := self.hv.network_bridge(net.source)):
            return []  # the network is gone, and its leases with it
        try:
            leases = self.hv.leases(net.source, record.mac)
        except HypervisorError:
            return []  # best effort: a lease left behind expires; a VM that cannot be deleted is worse
        return [[bridge, str(lease["ipaddr"]), record.mac, *([str(lease["clientid"])] if lease.get("clientid") else [])]
                for lease in leases]

    def _release(self, lease: builtins.list[str]) -> bool:
        """Tell the network's DHCP server the address is free (dnsmasq's ``dhcp_release``),
        so a deleted VM leaves no lease behind; it would otherwise hold the address for an hour."""
        assert self.netns is not None
        try:
            result = run(["ip", "netns", "exec", self.netns, "dhcp_release", *lease],
                         what=f"releasing the DHCP lease {lease[1]}", check=False, timeout=10)
        except VmctlError:  # (dhcp_release missing or hanging) best effort, as above
            return False
        return result.rc == 0

    def delete(self, name: str, progress: Progress = NoProgress()) -> builtins.list[str]:
        """:meth:`delete_unlocked` under the VM's lock, so it never races an ``up`` of the same
        name: one in progress finishes first (``progress`` says it is waited for)."""
        with file_lock(self.file(name, "lock"), what=f"VM {name}", progress=progress):
            removed = self.delete_unlocked(name)
        return [r for r in removed if not r.endswith(".lock")]  # the lock was made just now

    def up(
        self,
        spec: MachineSpec,
        progress: Progress = NoProgress(),
        keep_on_failure: bool = False,
        timeouts: Timeouts | None = None,
        timeline: Timeline | None = None,
        forward: bool = True,
        disk_from: Path | None = None,
    ) -> Machine:
        """Create, boot and provision VM ``spec.name`` (see :func:`vmctl.machines.lifecycle.up`).

        An identical existing VM is returned as it is (started if it was off); one
        with a different spec is refused. A failed ``up`` removes what it made,
        unless ``keep_on_failure``, and raises :class:`~vmctl.errors.PhaseError`.
        """
        return up(self, spec, progress, keep_on_failure, timeouts, timeline, forward, disk_from)
