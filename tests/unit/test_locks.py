from __future__ import annotations

import stat
from pathlib import Path

import pytest

from vmctl._core.locks import replacing


def test_replacing_shows_the_old_file_or_the_whole_new_one(tmp_path: Path) -> None:
    target = tmp_path / "seed.iso"
    target.write_bytes(b"old")
    with replacing(target, 0o600) as f:
        f.write(b"new, ")
        assert target.read_bytes() == b"old"  # not yet
        f.write(b"whole")
    assert target.read_bytes() == b"new, whole" and stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(RuntimeError), replacing(target) as f:
        f.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"new, whole"
    assert [p.name for p in tmp_path.iterdir()] == ["seed.iso"]  # nothing half-made left behind
