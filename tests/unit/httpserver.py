"""A small HTTP server on 127.0.0.1 that serves an image and its checksum list.

It honours Range requests, and can publish a wrong checksum or cut a
download off half-way, so the pull path is tested against real HTTP.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Served:
    image: bytes
    name: str = "disk.qcow2"
    wrong_checksum: bool = False
    cut_at: int | None = None  # close the connection after this many body bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)

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
        if self.path == "/SHA512SUMS":
            self._send(200, self.served.checksums())
        elif self.path == f"/{self.served.name}":
            self._image()
        else:
            self._send(404, b"not found")

    def _image(self) -> None:
        body, status, start = self.served.image, 200, 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            body, status = body[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
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


class ImageServer:
    def __init__(self, served: Served) -> None:
        handler = type("H", (Handler,), {"served": served})
        self.served = served
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
