"""The user's ~/.ssh/config gets vmctl's Include line: written whole, its mode and its symlink kept."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmctl.errors import ConfigError
from vmctl.machines import sshconfig

USER_TEXT = "Host mine\n  User me\n"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VMCTL_STATE_DIR", str(tmp_path / "state"))
    sshconfig.config_dir().mkdir(parents=True)
    old = os.umask(0o022)
    try:
        yield tmp_path
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _include() -> str:
    return f"Include {sshconfig.config_dir()}/*.conf"


def test_a_missing_config_and_ssh_directory_are_made_private(state: Path) -> None:
    config = state / "home" / ".ssh" / "config"
    sshconfig.ensure_include(config)
    assert _mode(config.parent) == 0o700 and _mode(config) == 0o600
    assert config.read_text() == f"{sshconfig.MARK}\n{_include()}\n"


def test_the_config_is_replaced_whole_not_rewritten_in_place(state: Path) -> None:
    config = state / "config"
    config.write_text(USER_TEXT)
    held = config.open()  # a reader that opened the file before the change
    before = config.stat().st_ino
    sshconfig.ensure_include(config)
    assert config.stat().st_ino != before  # a new file renamed over the old one
    assert held.read() == USER_TEXT  # the reader still has the whole old file
    held.close()
    assert config.read_text() == f"{sshconfig.MARK}\n{_include()}\n{USER_TEXT}"
    assert [p.name for p in state.iterdir() if p.name.startswith(".config")] == []  # no temporary file left


def test_the_configs_own_mode_is_kept(state: Path) -> None:
    config = state / "config"
    config.write_text(USER_TEXT)
    config.chmod(0o644)
    sshconfig.ensure_include(config)
    assert _mode(config) == 0o644


def test_a_symlinked_config_stays_a_symlink_and_its_target_gets_the_line(state: Path) -> None:
    dotfiles = state / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "ssh_config"
    target.write_text(USER_TEXT)
    target.chmod(0o640)
    (state / ".ssh").mkdir()
    config = state / ".ssh" / "config"
    config.symlink_to(target)
    sshconfig.ensure_include(config)
    assert config.is_symlink() and config.resolve() == target
    assert target.read_text() == f"{sshconfig.MARK}\n{_include()}\n{USER_TEXT}" and _mode(target) == 0o640


def test_an_unchanged_config_is_not_rewritten(state: Path) -> None:
    config = state / "config"
    sshconfig.ensure_include(config)
    before = config.stat()
    sshconfig.ensure_include(config)
    assert config.stat().st_ino == before.st_ino


def test_a_config_that_cannot_be_written_is_a_config_error_with_the_line_to_add(state: Path) -> None:
    config = state / ".ssh" / "config"
    config.parent.mkdir()
    config.symlink_to(state / "no-such-dir" / "config")
    with pytest.raises(ConfigError, match="cannot write the SSH config") as caught:
        sshconfig.ensure_include(config)
    assert _include() in caught.value.hint


def _machine(state: Path) -> Any:
    host = SimpleNamespace(file=lambda name, suffix: state / f"{name}.{suffix}")
    return SimpleNamespace(name="web", host=host, record=SimpleNamespace(host_key="ssh-ed25519 AAAA"))


def test_known_hosts_is_replaced_whole(state: Path) -> None:
    path = state / "web.known_hosts"
    path.write_text("old\n")
    before = path.stat().st_ino
    assert sshconfig.known_hosts(_machine(state)) == path
    assert path.read_text() == "vmctl-web ssh-ed25519 AAAA\n" and path.stat().st_ino != before


def test_a_symlink_loop_is_a_config_error(state: Path) -> None:
    config = state / "config"
    config.symlink_to(config)
    with pytest.raises(ConfigError, match="cannot read the SSH config"):
        sshconfig.ensure_include(config)
