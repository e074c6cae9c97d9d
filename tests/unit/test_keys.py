"""vmctl's client key pair: made whole, repaired when half of it is missing, never readable by others."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmctl.errors import ConfigError
from vmctl.guest.keys import client_key, fingerprint, generate, public_line


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0, so that every mode checked below is the one vmctl asked for."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_pair_is_private_and_matches(tmp_path: Path, open_umask: None) -> None:
    directory = tmp_path / "state" / "ssh"
    private, line = client_key(directory)
    assert _mode(directory) == 0o700 and _mode(private) == 0o600
    assert private.with_suffix(".pub").read_text() == line + "\n" and line.endswith(" vmctl")
    assert public_line(private.read_text(), "vmctl") == line
    assert client_key(directory) == (private, line)  # made once
    assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_a_private_key_without_its_public_half_is_repaired(tmp_path: Path) -> None:
    """A kill between the two writes of an older vmctl left only the private key."""
    pair = generate("vmctl")
    (tmp_path / "id_ed25519").write_text(pair.private)
    (tmp_path / "id_ed25519").chmod(0o600)
    private, line = client_key(tmp_path)
    assert line == pair.public and private.with_suffix(".pub").read_text() == pair.public + "\n"
    assert private.read_text() == pair.private  # the key VMs already trust is kept


@pytest.mark.parametrize("damaged", ["", "ssh-ed25519 AAAAC3Nza", generate().public])
def test_a_damaged_or_foreign_public_half_is_made_again_from_the_private_key(tmp_path: Path, damaged: str) -> None:
    pair = generate("vmctl")
    (tmp_path / "id_ed25519").write_text(pair.private)
    (tmp_path / "id_ed25519.pub").write_text(damaged)
    _, line = client_key(tmp_path)
    assert line == pair.public and (tmp_path / "id_ed25519.pub").read_text() == pair.public + "\n"


def test_the_public_half_is_written_before_the_private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed between the two renames, the next call finds no private key and makes a whole new pair."""
    real = Path.replace
    renamed: list[str] = []

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        renamed.append(Path(target).name)
        if len(renamed) == 2:
            raise KeyboardInterrupt  # as a kill after the first file
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        client_key(tmp_path)
    monkeypatch.undo()
    assert renamed == ["id_ed25519.pub", "id_ed25519"] and not (tmp_path / "id_ed25519").exists()
    private, line = client_key(tmp_path)
    assert public_line(private.read_text(), "vmctl") == line == (tmp_path / "id_ed25519.pub").read_text().strip()


def test_loose_modes_are_tightened(tmp_path: Path, open_umask: None) -> None:
    directory = tmp_path / "ssh"
    private, _ = client_key(directory)
    directory.chmod(0o755)
    private.chmod(0o644)
    client_key(directory)
    assert _mode(directory) == 0o700 and _mode(private) == 0o600


def test_an_unusable_private_key_is_a_config_error_saying_what_to_remove(tmp_path: Path) -> None:
    (tmp_path / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(ConfigError, match="is unusable") as caught:
        client_key(tmp_path)
    assert f"remove {tmp_path / 'id_ed25519'}" in caught.value.hint


def test_public_line_matches_generate() -> None:
    pair = generate("c")
    assert public_line(pair.private, "c") == pair.public
    assert fingerprint(public_line(pair.private)) == fingerprint(pair.public)
