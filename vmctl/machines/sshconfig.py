"""OpenSSH client settings for a VM, so ``ssh`` and ``docker`` (DOCKER_HOST=ssh://)
reach it with its pinned host key, through the runtime's namespace when needed."""

from __future__ import annotations

import os
import pwd
import shlex
import stat
import sys
from pathlib import Path

from .._core.locks import replacing
from .._core.paths import state_dir
from ..errors import ConfigError
from ..model.uri import JumpHost
from .machine import Machine


def alias(machine: Machine) -> str:
    return f"vmctl-{machine.name}"


def known_hosts(machine: Machine) -> Path:
    path = machine.host.file(machine.name, "known_hosts")
    _replace_text(path, f"{alias(machine)} {machine.record.host_key}\n", 0o644)
    return path


def options(machine: Machine) -> dict[str, str]:
    """``ssh -o`` settings: pinned key only, strict checking, vmctl's identity."""
    ep = machine.endpoint()
    opts = {
        "HostName": ep.address, "User": ep.user, "IdentityFile": str(ep.client_key), "IdentitiesOnly": "yes",
        "UserKnownHostsFile": str(known_hosts(machine)), "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes", "HostKeyAlias": alias(machine), "LogLevel": "ERROR",
        # an idle session lasts; a VM that is gone is noticed within 30 s
        "ServerAliveInterval": "10", "ServerAliveCountMax": "3",
    }
    if ep.jump is not None:  # through the remote hypervisor's sshd, as vmctl's own connections go
        opts["ProxyCommand"] = shlex.join(jump_argv(ep.jump.host))
    elif ep.netns:
        # -P: nothing imported from the directory ssh was started in; starts in <0.1 s
        proxy = [sys.executable, "-P", "-m", "vmctl._core.proxy", ep.netns, "%h", "%p"]
        opts["ProxyCommand"] = shlex.join(proxy)
    return opts


def jump_argv(host: JumpHost) -> list[str]:
    """``ssh -W %h:%p`` through the hypervisor: its host key checked (known_hosts), the
    URI's user, port and keyfile."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-p", str(host.port), "-l", host.user]
    if host.keyfile:
        argv += ["-i", str(host.keyfile), "-o", "IdentitiesOnly=yes"]
    if host.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={host.known_hosts}"]
    return [*argv, "-W", "%h:%p", host.host]


def ssh_argv(machine: Machine, command: list[str]) -> list[str]:
    """The OpenSSH command line that reaches ``machine``."""
    argv = ["ssh"]
    for key, value in options(machine).items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, alias(machine), *command]


def config_dir() -> Path:
    return state_dir() / "ssh" / "config.d"


def write_entry(machine: Machine) -> Path:
    """``Host vmctl-NAME`` in vmctl's ssh config directory."""
    lines = [f"Host {alias(machine)}"] + [f"  {k} {v}" for k, v in options(machine).items()]
    path = config_dir() / f"{machine.name}.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_text(path, "\n".join(lines) + "\n", 0o644)
    return path


def _replace_text(path: Path, text: str, mode: int) -> None:
    """``path`` replaced whole by ``text`` (an ssh reading it meanwhile sees the old or the new file)."""
    with replacing(path, mode) as f:
        os.fchmod(f.fileno(), mode)  # exactly ``mode``, whatever the umask
        f.write(text.encode())


MARK = "# vmctl: its VMs as Host vmctl-NAME"


def user_ssh_config() -> Path:
    """The file OpenSSH reads: it follows the passwd entry's home, not $HOME."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh" / "config"


def ensure_include(config: Path | None = None) -> Path:
    """Make the user's ssh config include vmctl's entries, once, at the top.

    Include lines vmctl added earlier for state directories that no longer
    exist are dropped, so the file does not collect stale lines.
    """
    config = config or user_ssh_config()
    include = f"Include {config_dir()}/*.conf"
    lines = _read_config(config).splitlines()
    kept: list[str] = []
    skip = False
    for line in lines:
        if line == MARK:
            skip = True
            continue
        if skip:
            skip = False
            stale = not Path(line.removeprefix("Include ").rsplit("/", 1)[0]).is_dir()
            if line == include or stale:
                continue
            kept += [MARK]
        kept.append(line)
    _write_config(config, "\n".join([MARK, include, *kept]) + "\n")
    return config


def _read_config(config: Path) -> str:
    try:
        return config.read_text()
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise ConfigError(f"cannot read the SSH config {config}: {e.strerror or e}",
                          hint=f"check its owner and mode: ls -lL {config}") from e


def _write_config(config: Path, text: str) -> None:
    """Replace the file whole (a reader never sees half of it), keeping its mode (0600 when new);
    a symlinked config keeps its link: the file it points to is the one replaced."""
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        target = config.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop (RuntimeError before Python 3.13)
        raise ConfigError(f"cannot follow the SSH config {config}: {e}", hint=f"ls -l {config}") from e
    try:
        if target.read_text() == text:
            return
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o600
    except OSError as e:
        raise _unwritable(config, target, e) from e
    try:
        _replace_text(target, text, mode)
    except OSError as e:
        raise _unwritable(config, target, e) from e


def _unwritable(config: Path, target: Path, e: OSError) -> ConfigError:
    return ConfigError(f"cannot write the SSH config {target}: {e.strerror or e}",
                       hint=f"add the line 'Include {config_dir()}/*.conf' to {config} yourself")
