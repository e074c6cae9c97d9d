"""The pull path against a real HTTP(S) server on 127.0.0.1.

Plain http reaches 127.0.0.1 only with VMCTL_ALLOW_HTTP_LOCALHOST=1, which every
test here sets (``allow_http``) unless it checks the refusal.
"""

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
from vmctl.images.download import ALLOW_HTTP_ENV, parse_checksums

from .httpserver import ImageServer, Served, tls_files

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def allow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_HTTP_ENV, "1")


def make_qcow2(path: Path, pattern: int) -> bytes:
    """A real qcow2 with some data in it, so a cut-off lands mid-file."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", f"write -P {pattern:#x} 0 3M", str(path)], check=True, capture_output=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_qcow2(tmp_path_factory.mktemp("img") / "disk.qcow2", 0x5A)


@pytest.fixture(scope="module")
def qcow2_changed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Another version of the image, as a mirror might publish it mid-download."""
    return make_qcow2(tmp_path_factory.mktemp("img") / "disk.qcow2", 0xA5)


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
    assert cache_files(isolated) == ["local.part", "local.part.validator"]  # kept for resuming, not usable
    assert vmctl.image_list() == []
    server.served.cut_at = None
    image = vmctl.image_pull(definition)
    assert ("/disk.qcow2", f"bytes={half}-") in server.served.requests
    assert server.served.if_ranges[-1] == server.served.etag  # the rest, if it is still the same file
    assert Path(image.path).read_bytes() == qcow2
    assert cache_files(isolated) == sorted(["local.json", Path(image.path).name])  # the validator went too


def test_a_file_changed_since_the_cut_off_starts_again_instead_of_being_spliced(
    definition: str, server: ImageServer, qcow2: bytes, qcow2_changed: bytes, isolated: Path
) -> None:
    server.served.cut_at = len(qcow2) // 2
    with pytest.raises(vmctl.DownloadError, match="stopped after"):
        vmctl.image_pull(definition)
    first = server.served.etag
    server.served.cut_at, server.served.image = None, qcow2_changed  # the mirror published a new version
    image = vmctl.image_pull(definition)
    assert server.served.if_ranges[-1] == first  # so the server sent the whole new file
    assert Path(image.path).read_bytes() == qcow2_changed
    assert image.sha256 == hashlib.sha256(qcow2_changed).hexdigest()


def test_a_part_the_server_did_not_ask_for_starts_the_download_again(
    definition: str, server: ImageServer, qcow2: bytes, isolated: Path
) -> None:
    """A 206 whose Content-Range is not where the partial file ends must not be spliced in."""
    server.served.cut_at = len(qcow2) // 2
    with pytest.raises(vmctl.DownloadError, match="stopped after"):
        vmctl.image_pull(definition)
    server.served.cut_at, server.served.wrong_range = None, True
    image = vmctl.image_pull(definition)
    assert server.served.requests[-1] == ("/disk.qcow2", None)  # asked again for the whole file
    assert Path(image.path).read_bytes() == qcow2


def test_a_part_without_a_validator_starts_again(
    definition: str, server: ImageServer, qcow2: bytes, isolated: Path
) -> None:
    server.served.cut_at, server.served.validators = len(qcow2) // 2, False
    with pytest.raises(vmctl.DownloadError, match="stopped after"):
        vmctl.image_pull(definition)
    assert cache_files(isolated) == ["local.part"]  # nothing would tell a changed file: no resume
    server.served.cut_at = None
    image = vmctl.image_pull(definition)
    assert [r for p, r in server.served.requests if p == "/disk.qcow2"] == [None, None]
    assert Path(image.path).read_bytes() == qcow2


def test_plain_http_is_refused_without_the_test_switch(
    definition: str, server: ImageServer, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOW_HTTP_ENV)
    with pytest.raises(vmctl.DownloadError, match="only https:// URLs are fetched") as e:
        vmctl.image_pull(definition)
    assert ALLOW_HTTP_ENV in e.value.hint
    assert server.served.requests == [] and not (isolated / "cache").exists()


def test_plain_http_to_another_host_is_refused_even_with_the_switch(isolated: Path) -> None:
    (isolated / "defs" / "x.yaml").write_text(
        "name: x\ndownload:\n  url: http://example.invalid/x.qcow2\n  checksums: https://example.invalid/SUMS\n"
    )
    with pytest.raises(vmctl.DownloadError, match="refusing to download http://example.invalid/x.qcow2"):
        vmctl.image_pull("x")
    assert not (isolated / "cache").exists()


def test_a_redirect_to_plain_http_elsewhere_is_refused(definition: str, server: ImageServer) -> None:
    server.served.redirects["/SHA512SUMS"] = "http://example.invalid/SHA512SUMS"
    with pytest.raises(vmctl.DownloadError, match="refusing to download http://example.invalid/SHA512SUMS"):
        vmctl.image_pull(definition)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return tls_files(tmp_path_factory.mktemp("tls"))


def https_definition(isolated: Path, url: str) -> str:
    (isolated / "defs" / "tls.yaml").write_text(
        f"name: tls\ndownload:\n  url: {url}/disk.qcow2\n  checksums: {url}/SHA512SUMS\n"
    )
    return "tls"


def test_https_pulls(isolated: Path, qcow2: bytes, tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_HTTP_ENV)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))  # the test server's certificate is trusted
    with ImageServer(Served(qcow2), tls=tls) as srv:
        image = vmctl.image_pull(https_definition(isolated, srv.url))
    assert Path(image.path).read_bytes() == qcow2


def test_a_redirect_from_https_to_http_is_refused(
    isolated: Path, qcow2: bytes, server: ImageServer, tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))
    redirect = Served(qcow2, redirects={"/disk.qcow2": f"{server.url}/disk.qcow2"})
    with ImageServer(redirect, tls=tls) as srv, pytest.raises(vmctl.DownloadError, match="refusing to leave https"):
        vmctl.image_pull(https_definition(isolated, srv.url))  # even to 127.0.0.1, allowed over http
    assert server.served.requests == []
    assert vmctl.image_list() == []


def test_missing_checksum_entry(isolated: Path, server: ImageServer) -> None:
    (isolated / "defs" / "x.yaml").write_text(
        f"name: x\ndownload:\n  url: {server.url}/nothere.qcow2\n  checksums: {server.url}/SHA512SUMS\n"
    )
    with pytest.raises(vmctl.DownloadError, match="no checksum for nothere.qcow2"):
        vmctl.image_pull("x")
    assert cache_files(isolated) == []


def test_unreachable_server(isolated: Path) -> None:  # http to 127.0.0.1: allowed here
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
