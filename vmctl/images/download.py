"""Verified, resumable downloads of base images.

``pull`` fetches the published checksum list, then the image into
``NAME.part`` (resuming with an HTTP Range request when a partial file is
there), hashes it, and only on a match moves it into place and publishes the
record. A mismatch deletes the partial file: nothing usable is left.
"""

from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import urlparse

from .._core.locks import file_lock
from .._core.proc import run
from .._core.progress import NoProgress, Progress
from ..errors import ChecksumError, DownloadError, ImageError
from .catalog import Cache, CachedImage, Download, new_record, recipe_digest

CHUNK = 1 << 20
_GNU = re.compile(r"^([0-9a-fA-F]{32,128})\s+\*?(.+)$")
_BSD = re.compile(r"^(\w+) \((.+)\) = ([0-9a-fA-F]{32,128})$")


def parse_checksums(text: str) -> dict[str, str]:
    """File name -> hex digest, from GNU (``HEX  NAME``) or BSD (``ALGO (NAME) = HEX``) lists."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _GNU.match(line):
            sums[PurePosixPath(m.group(2)).name] = m.group(1).lower()
        elif m := _BSD.match(line):
            sums[PurePosixPath(m.group(2)).name] = m.group(3).lower()
    return sums


def expected_digest(source: Download, timeout: float = 30) -> str:
    """The published digest of ``source.url`` from its checksum list."""
    listing = _fetch_text(source.checksums, timeout)
    filename = PurePosixPath(urlparse(source.url).path).name
    digest = parse_checksums(listing).get(filename)
    if digest is None:
        raise DownloadError(
            f"{source.checksums} has no checksum for {filename}",
            url=source.checksums,
            hint="check the image definition's download.url and download.checksums",
        )
    return digest


def _fetch_text(url: str, timeout: float) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read(4 << 20).decode(errors="replace"))
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot fetch {url}: {_reason(e)}", url=url) from e


def _reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or e)


def fetch(url: str, part: Path, progress: Progress, timeout: float = 30) -> None:
    """Download ``url`` into ``part``, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:
                offset = 0  # the server ignored Range: start again
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with part.open("r+b" if offset else "wb") as out:
                out.seek(offset)
                _copy(response, out, offset, total, progress)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # already complete
            return
        raise DownloadError(f"downloading {url}: HTTP {e.code} {e.reason}", url=url) from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(
            f"downloading {url} stopped after {_size(part)} bytes: {_reason(e)}", url=url
        ) from e


def _copy(src: IO[bytes], out: IO[bytes], done: int, total: int | None, progress: Progress) -> None:
    while chunk := src.read(CHUNK):
        out.write(chunk)
        done += len(chunk)
        progress.advance(done, total)
    if total is not None and done < total:
        raise OSError(f"connection closed at {done} of {total} bytes")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def file_digest(path: Path, algorithm: str, progress: Progress = NoProgress()) -> str:
    h = hashlib.new(algorithm)
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            done += len(chunk)
            progress.advance(done, total)
    return h.hexdigest()


def verify(part: Path, url: str, expected: str, algorithm: str, progress: Progress) -> None:
    got = file_digest(part, algorithm, progress)
    if got != expected.lower():
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{url}: {algorithm} is {got[:16]}..., the checksum list says {expected[:16]}...",
            path=str(part),
            expected=expected,
            got=got,
        )


def check_qcow2(path: Path) -> None:
    info = run(["qemu-img", "info", "--output=json", str(path)], what="reading the image header", check=False)
    if not info.ok or '"format": "qcow2"' not in info.stdout:
        raise ImageError(f"{path.name} is not a qcow2 image: {info.tail() or info.stdout[:80]}")


def pull(name: str, source: Download, user: str, cache: Cache, progress: Progress = NoProgress()) -> CachedImage:
    """Download, verify and publish image ``name``; a cached one is returned as it is."""
    cache.root.mkdir(parents=True, exist_ok=True)
    with file_lock(cache.lock_path(name)):
        if (cached := cache.get(name)) is not None:
            return cached
        progress.phase("checksums")
        expected = expected_digest(source)
        part = cache.file(name, "part")
        progress.phase("downloading")
        fetch(source.url, part, progress)
        progress.phase("verifying")
        verify(part, source.url, expected, source.algorithm, progress)
        try:
            check_qcow2(part)
        except ImageError:
            part.unlink(missing_ok=True)
            raise
        sha256 = expected if source.algorithm == "sha256" else file_digest(part, "sha256")
        disk = cache.versioned(name, sha256, "qcow2")
        part.replace(disk)
        return cache.publish(new_record(name, disk, sha256, "download", user=user, recipe=recipe_digest(source)))
