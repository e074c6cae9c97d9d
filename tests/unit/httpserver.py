"""A small HTTP(S) server on 127.0.0.1 that serves an image and its checksum list.

It honours Range requests (and If-Range against the image's ETag), can publish
a wrong checksum, cut a download off half-way, or redirect, so the pull path is
tested against real HTTP. vmctl fetches plain http only from 127.0.0.1 and only
with ``VMCTL_ALLOW_HTTP_LOCALHOST=1``; :func:`tls_files` makes a certificate for
an https server that a client trusts through ``SSL_CERT_FILE``.
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Served:
    image: bytes
    name: str = "disk.qcow2"
    wrong_checksum: bool = False
    cut_at: int | None = None  # close the connection after this many body bytes
    validators: bool = True  # send ETag and Last-Modified with the image
    wrong_range: bool = False  # answer a Range with another part (206 from byte 0)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)
    if_ranges: list[str | None] = field(default_factory=list)  # If-Range of each image request

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.image).hexdigest()[:16] + '"'

    def checksums(self) -> bytes:
        digest = hashlib.sha512(b"not the image" if self.wrong_checksum else self.image).hexdigest()
        return f"{digest}  other.qcow2\n{digest}  {self.name}\n".encode().replace(
            f"{digest}  other".encode(), b"0" * 128 + b"  other"
        )


class Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.served.requests.append((self.path, self.headers.get("Range")))
        if location := self.served.redirects.get(self.path):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/SHA512SUMS":
            self._send(200, self.served.checksums())
        elif self.path == f"/{self.served.name}":
            self.served.if_ranges.append(self.headers.get("If-Range"))
            self._image()
        else:
            self._send(404, b"not found")

    def _wants_range(self) -> bool:
        """A Range to honour: none when If-Range names another version (RFC 9110 13.1.5)."""
        if_range = self.headers.get("If-Range")
        return bool(self.headers.get("Range")) and (if_range is None or if_range == self.served.etag)

    def _image(self) -> None:
        body, status, start = self.served.image, 200, 0
        if self._wants_range():
            start = 0 if self.served.wrong_range else int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
            body, status = body[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if self.served.validators:
            self.send_header("ETag", self.served.etag)
            self.send_header("Last-Modified", formatdate(0, usegmt=True))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(self.served.image) - 1}/{len(self.served.image)}")
        self.end_headers()
        if self.served.cut_at is not None:
            body = body[: max(0, self.served.cut_at - start)]
        self.wfile.write(body)
        self.close_connection = True

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


class ImageServer:
    def __init__(self, served: Served, tls: tuple[Path, Path] | None = None) -> None:
        handler = type("H", (Handler,), {"served": served})
        self.served = served
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
