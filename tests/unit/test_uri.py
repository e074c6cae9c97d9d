"""libvirt URIs: which are remote, and the hypervisor's sshd a qemu+ssh URI names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.machines.sshconfig import jump_argv
from vmctl.model.uri import JumpHost, is_remote, require_local


@pytest.mark.parametrize(("uri", "remote"), [
    ("qemu:///system", False), ("qemu:///session", False), ("test:///default", False),
    ("qemu:///system?socket=/var/tmp/x/libvirt-sock", False),
    ("qemu+ssh://root@host-b/system", True), ("qemu+tcp://10.0.0.2/system", True),
])
def test_a_uri_with_a_host_is_remote(uri: str, remote: bool) -> None:
    assert is_remote(uri) is remote


def test_a_qemu_ssh_uri_names_the_hypervisors_sshd() -> None:
    host = JumpHost.from_uri("qemu+ssh://ops@127.0.0.1:2222/system?socket=/s/libvirt-sock"
                             "&keyfile=/k/id_ed25519&known_hosts=/k/known_hosts")
    assert host == JumpHost("127.0.0.1", 2222, "ops", Path("/k/id_ed25519"), Path("/k/known_hosts"))
    assert host.known_hosts_id == "[127.0.0.1]:2222"
    plain = JumpHost.from_uri("qemu+ssh://host-b/system")
    assert (plain.user, plain.port, plain.keyfile, plain.known_hosts_id) == ("root", 22, None, "host-b")


@pytest.mark.parametrize(("uri", "message"), [
    ("qemu+tcp://10.0.0.2/system", "only qemu+ssh:// hosts are reached over SSH"),
    ("qemu:///system", "only qemu+ssh:// hosts are reached over SSH"),
    ("qemu+ssh://host-b:99999/system", "invalid port"),
    ("qemu+ssh://host-b/system?no_verify=1", "vmctl always checks it"),
])
def test_what_cannot_be_reached_over_ssh_is_one_line(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        JumpHost.from_uri(uri)
    assert "\n" not in e.value.message


def test_openssh_goes_through_the_same_hypervisor_with_its_key_checked() -> None:
    argv = jump_argv(JumpHost("127.0.0.1", 2222, "ops", Path("/k/id"), Path("/k/known")))
    assert argv == ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-p", "2222", "-l", "ops",
                    "-i", "/k/id", "-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=/k/known",
                    "-W", "%h:%p", "127.0.0.1"]


def test_commands_on_the_hypervisors_files_are_refused_on_a_remote_host() -> None:
    require_local("qemu:///system?socket=/run/x", "clone")  # this machine's: fine
    with pytest.raises(ConfigError, match=r"^clone needs the hypervisor on this machine, not qemu\+ssh://h/system$"):
        require_local("qemu+ssh://h/system", "clone")
