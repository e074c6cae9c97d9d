"""The pull path against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmctl
from vmctl.images.download import parse_checksums

from .httpserver import ImageServer, Served

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real qcow2 with some data in it, so a cut-off lands mid-file."""
    path = tmp_path_factory.mktemp("img") / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 3M", str(path)], check=True, capture_output=True)
    return path.read_bytes()


@pytest.fixture
def server(qcow2: bytes) -> Iterator[ImageServer]:
    with ImageServer(Served(qcow2)) as srv:
        yield srv


@pytest.fixture
def definition(isolated: Path, server: ImageServer) -> str:
    (isolated / "defs" / "local.yaml").write_text(
        f"name: local\nuser: debian\ndownload:\n  url: {server.url}/disk.qcow2\n"
        f"  checksums: {server.url}/SHA512SUMS\n  algorithm: sha512\n"
    )
    return "local"


def cache_files(isolated: Path) -> list[str]:
    root = isolated / "cache" / "images"
    return sorted(p.name for p in root.iterdir() if p.suffix != ".lock") if root.exists() else []


def test_pull_verifies_and_lists_the_image(definition: str, qcow2: bytes, isolated: Path) -> None:
    image = vmctl.image_pull(definition)
    assert image.sha256 == hashlib.sha256(qcow2).hexdigest()
    assert Path(image.path).read_bytes() == qcow2
    assert [i.name for i in vmctl.image_list()] == ["local"]
    assert image.source == "download" and image.size == len(qcow2)


def test_a_second_pull_downloads_nothing(definition: str, server: ImageServer) -> None:
    vmctl.image_pull(definition)
    before = len(server.served.requests)
    vmctl.image_pull(definition)
    assert len(server.served.requests) == before


def test_wrong_checksum_is_an_error_and_leaves_nothing(definition: str, server: ImageServer, isolated: Path) -> None:
    server.served.wrong_checksum = True
    with pytest.raises(vmctl.ChecksumError) as e:
        vmctl.image_pull(definition)
    assert "sha512" in str(e.value) and e.value.expected != e.value.got
    assert cache_files(isolated) == []
    assert vmctl.image_list() == []


def test_cut_off_download_fails_then_resumes(
    definition: str, server: ImageServer, qcow2: bytes, isolated: Path
) -> None:
    half = len(qcow2) // 2
    server.served.cut_at = half
    with pytest.raises(vmctl.DownloadError, match="stopped after"):
        vmctl.image_pull(definition)
    assert cache_files(isolated) == ["local.part"]  # kept for resuming, not usable
    assert vmctl.image_list() == []
    server.served.cut_at = None
    image = vmctl.image_pull(definition)
    assert ("/disk.qcow2", f"bytes={half}-") in server.served.requests
    assert Path(image.path).read_bytes() == qcow2


def test_missing_checksum_entry(isolated: Path, server: ImageServer) -> None:
    (isolated / "defs" / "x.yaml").write_text(
        f"name: x\ndownload:\n  url: {server.url}/nothere.qcow2\n  checksums: {server.url}/SHA512SUMS\n"
    )
    with pytest.raises(vmctl.DownloadError, match="no checksum for nothere.qcow2"):
        vmctl.image_pull("x")
    assert cache_files(isolated) == []


def test_unreachable_server(isolated: Path) -> None:
    (isolated / "defs" / "x.yaml").write_text(
        "name: x\ndownload:\n  url: http://127.0.0.1:9/x.qcow2\n  checksums: http://127.0.0.1:9/SUMS\n"
    )
    with pytest.raises(vmctl.DownloadError, match="cannot fetch http://127.0.0.1:9/SUMS"):
        vmctl.image_pull("x")


def test_not_a_qcow2_is_refused(isolated: Path) -> None:
    with ImageServer(Served(b"hello" * 1000)) as srv:
        (isolated / "defs" / "x.yaml").write_text(
            f"name: x\ndownload:\n  url: {srv.url}/disk.qcow2\n  checksums: {srv.url}/SHA512SUMS\n"
        )
        with pytest.raises(vmctl.ImageError, match="not a qcow2 image"):
            vmctl.image_pull("x")
    assert cache_files(isolated) == []


def test_concurrent_pulls_download_once_and_agree(
    definition: str, server: ImageServer, qcow2: bytes, isolated: Path
) -> None:
    cmd = [sys.executable, "-m", "vmctl.cli", "image", "pull", definition, "--json"]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()) for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    shas = {json.loads(out)["sha256"] for out, _ in outputs}
    assert shas == {hashlib.sha256(qcow2).hexdigest()}
    assert sum(path == "/disk.qcow2" for path, _ in server.served.requests) == 1


def test_cli_reports_a_bad_checksum_in_one_line_with_a_hint(definition: str, server: ImageServer) -> None:
    server.served.wrong_checksum = True
    done = subprocess.run(
        [sys.executable, "-m", "vmctl.cli", "image", "pull", definition], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert errors[0].startswith(f"error: {server.url}/disk.qcow2: sha512 is")
    assert errors[1].startswith("hint: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc123" * 8 + "  dir/file.qcow2\n", {"file.qcow2": "abc123" * 8}),
        ("ABC123" * 8 + " *file.qcow2\n", {"file.qcow2": "abc123" * 8}),
        ("SHA512 (file.qcow2) = " + "ab" * 64 + "\n", {"file.qcow2": "ab" * 64}),
        ("# comment\n\ngarbage line\n", {}),
    ],
)
def test_parse_checksums(text: str, expected: dict[str, str]) -> None:
    assert parse_checksums(text) == expected
