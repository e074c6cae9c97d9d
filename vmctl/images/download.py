"""Verified, resumable downloads of base images.

``pull`` fetches the published checksum list, then the image into
``NAME.part`` (resuming with an HTTP Range request when a partial file is
there), hashes it, and only on a match moves it into place and publishes the
record. A mismatch deletes the partial file: nothing usable is left.

Every URL, and every redirect, is https: plain http only reaches a test server
on this host (127.0.0.1, localhost), and only when ``VMCTL_ALLOW_HTTP_LOCALHOST=1``
(or the caller) allows it; a redirect from https to http is always refused. A
resumed download sends ``If-Range`` with the validator (ETag or Last-Modified)
the first response carried, kept in ``NAME.part.validator``: a file that changed
on the server since comes back whole, and is never spliced onto the old part.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from email.message import Message
from http.client import HTTPMessage, HTTPResponse
from pathlib import Path, PurePosixPath
from typing import IO, cast
from urllib.parse import urlparse

from .._core.locks import file_lock
from .._core.proc import run
from .._core.progress import NoProgress, Progress
from ..errors import ChecksumError, DownloadError, ImageError
from .catalog import Cache, CachedImage, Download, new_record, recipe_digest

CHUNK = 1 << 20
_GNU = re.compile(r"^([0-9a-fA-F]{32,128})\s+\*?(.+)$")
_BSD = re.compile(r"^(\w+) \((.+)\) = ([0-9a-fA-F]{32,128})$")
ALLOW_HTTP_ENV = "VMCTL_ALLOW_HTTP_LOCALHOST"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def http_allowed() -> bool:
    """Whether ``$VMCTL_ALLOW_HTTP_LOCALHOST`` is ``1``: plain http to this host, for tests."""
    return os.environ.get(ALLOW_HTTP_ENV) == "1"


def check_url(url: str, allow_http: bool) -> str:
    """``url`` if it is https (or http to this host, when ``allow_http``); else :class:`DownloadError`."""
    try:
        parts = urlparse(url)
        scheme, host = parts.scheme, parts.hostname
    except ValueError:  # a malformed host ("http://[::1")
        scheme, host = "", None
    if scheme == "https" and host:
        return url
    if scheme == "http" and host in LOCAL_HOSTS and allow_http:
        return url
    raise DownloadError(
        f"refusing to download {url}: only https:// URLs are fetched", url=url,
        hint=f"use an https:// URL (plain http reaches only 127.0.0.1, and only with {ALLOW_HTTP_ENV}=1)",
    )


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL :func:`check_url` accepts, and never from https to http."""

    def __init__(self, allow_http: bool) -> None:
        self.allow_http = allow_http

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if urlparse(req.full_url).scheme == "https" and urlparse(newurl).scheme != "https":
            raise DownloadError(f"{req.full_url} redirects to {newurl}: refusing to leave https", url=newurl,
                                hint="the server downgrades the download to plain http; use another mirror")
        check_url(newurl, self.allow_http)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(request: str | urllib.request.Request, timeout: float, allow_http: bool) -> HTTPResponse:
    """``urlopen`` for an https (or allowed http) URL, following only the redirects
    :class:`_Redirects` accepts."""
    url = request if isinstance(request, str) else request.full_url
    check_url(url, allow_http)
    opener = urllib.request.build_opener(_Redirects(allow_http))
    return cast(HTTPResponse, opener.open(request, timeout=timeout))  # http(s) only: see check_url


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


def expected_digest(source: Download, timeout: float = 30, allow_http: bool = False) -> str:
    """The published digest of ``source.url`` from its checksum list."""
    listing = _fetch_text(source.checksums, timeout, allow_http)
    filename = PurePosixPath(urlparse(source.url).path).name
    digest = parse_checksums(listing).get(filename)
    if digest is None:
        raise DownloadError(
            f"{source.checksums} has no checksum for {filename}",
            url=source.checksums,
            hint="check the image definition's download.url and download.checksums",
        )
    return digest


def _fetch_text(url: str, timeout: float, allow_http: bool) -> str:
    try:
        with _open(url, timeout, allow_http) as response:
            return str(response.read(4 << 20).decode(errors="replace"))
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DownloadError(f"cannot fetch {url}: {_reason(e)}", url=url) from e


def _reason(e: Exception) -> str:
    return str(getattr(e, "reason", None) or e)


def validator_file(part: Path) -> Path:
    """Where the validator of ``part``'s first response is kept (next to it)."""
    return part.with_name(part.name + ".validator")


def validator(headers: Message) -> str | None:
    """What ``If-Range`` may send back: a strong ETag, else Last-Modified (RFC 9110 13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = headers.get("Last-Modified")
    return str(modified) if modified else None


def _resume_from(part: Path) -> tuple[int, dict[str, str]]:
    """Where to resume ``part`` and the headers that ask for the rest: none without a
    recorded validator (nothing would tell a changed file), so it starts again."""
    offset = _size(part)
    try:
        since = validator_file(part).read_text().strip()
    except OSError:
        since = ""
    if not (offset and since):
        return 0, {}
    return offset, {"Range": f"bytes={offset}-", "If-Range": since}


def _resumed(response: HTTPResponse, offset: int) -> bool:
    """Whether ``response`` is the rest of the file from ``offset`` (else: the whole file)."""
    content_range = response.headers.get("Content-Range") or ""
    return response.status == 206 and content_range.startswith(f"bytes {offset}-")


def fetch(url: str, part: Path, progress: Progress, timeout: float = 30, allow_http: bool = False) -> None:
    """Download ``url`` into ``part``, resuming from its current size if the file did not change."""
    offset, headers = _resume_from(part)
    try:
        with _open(urllib.request.Request(url, headers=headers), timeout, allow_http) as response:
            if offset and not _resumed(response, offset):
                if response.status == 206:  # a part we did not ask for: start again, asking for all
                    response.close()
                    discard(part)
                    fetch(url, part, progress, timeout, allow_http)
                    return
                offset = 0  # the file changed (If-Range), or the server ignored Range: start again
            if not offset:
                _record_validator(part, validator(response.headers))
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with part.open("r+b" if offset else "wb") as out:
                out.seek(offset)
                _copy(response, out, offset, total, progress)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # already complete (the checksum tells if it is not)
            return
        raise DownloadError(f"downloading {url}: HTTP {e.code} {e.reason}", url=url) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # (IncompleteRead, InvalidURL)
        raise DownloadError(
            f"downloading {url} stopped after {_size(part)} bytes: {_reason(e)}", url=url
        ) from e


def _record_validator(part: Path, since: str | None) -> None:
    if since:
        validator_file(part).write_text(since + "\n")
    else:
        validator_file(part).unlink(missing_ok=True)


def discard(part: Path) -> None:
    """Delete a partial download and its validator."""
    part.unlink(missing_ok=True)
    validator_file(part).unlink(missing_ok=True)


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
        discard(part)
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


def pull(
    name: str, source: Download, user: str, cache: Cache, progress: Progress = NoProgress(),
    allow_http: bool | None = None,
) -> CachedImage:
    """Download, verify and publish image ``name``; a cached one is returned as it is.

    ``allow_http`` lets plain http reach 127.0.0.1 (a test server); by default
    ``$VMCTL_ALLOW_HTTP_LOCALHOST=1`` decides (see :func:`http_allowed`).
    """
    allow = http_allowed() if allow_http is None else allow_http
    check_url(source.checksums, allow)
    check_url(source.url, allow)
    lock = cache.lock_path(name)  # checks the name before any directory is made
    cache.root.mkdir(parents=True, exist_ok=True)
    with file_lock(lock):
        if (cached := cache.get(name)) is not None:
            return cached
        progress.phase("checksums")
        expected = expected_digest(source, allow_http=allow)
        part = cache.file(name, "part")
        progress.phase("downloading")
        fetch(source.url, part, progress, allow_http=allow)
        progress.phase("verifying")
        verify(part, source.url, expected, source.algorithm, progress)
        try:
            check_qcow2(part)
        except ImageError:
            discard(part)
            raise
        sha256 = expected if source.algorithm == "sha256" else file_digest(part, "sha256")
        disk = cache.versioned(name, sha256, "qcow2")
        part.replace(disk)
        validator_file(part).unlink(missing_ok=True)
        return cache.publish(new_record(name, disk, sha256, "download", user=user, recipe=recipe_digest(source)))
