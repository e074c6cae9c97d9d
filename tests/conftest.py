"""Shared test set-up: every test gets its own cache and state directories."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point vmctl's cache, state and image search path at a temporary directory."""
    monkeypatch.setenv("VMCTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("VMCTL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VMCTL_IMAGE_PATH", str(tmp_path / "defs"))
    (tmp_path / "defs").mkdir()
    return tmp_path
