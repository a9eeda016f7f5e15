"""A data source on 127.0.0.1 whose behaviour a test switches: ok, fail, hang, garbage and more.

Modes:

- ``ok``: ``body`` as CSV; ``custom``: ``body`` with ``status`` and ``content_type``;
- ``fail``: a 500; ``hang``: sleeps ``hang_seconds``, then ``body``;
- ``garbage``: binary junk (NUL bytes, not UTF-8) labelled text/csv;
- ``html``: an HTML error page with status 200 (``text/html``);
- ``non-utf8``: CSV records encoded in Latin-1, labelled text/csv;
- ``empty``: status 200 and no body at all;
- ``oversized``: announces ``size`` bytes in Content-Length, then withholds the body
  until the server stops (a client that reads it times out);
- ``chunked``: ``size`` bytes (endless when None) of CSV-like lines in chunks, no
  Content-Length, one chunk every ``chunk_delay`` seconds.

``sent`` counts the body bytes the streaming modes handed to the server: how much a
client made the server produce before it hung up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.support.servers import ThreadedServer

HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>503 Service Temporarily Unavailable</title></head>"
             b"<body><h1>Service Temporarily Unavailable</h1><p>Please try again later.</p></body></html>\n")
LATIN1_CSV = ("DateTime,Temp\u00e9rature,Humidit\u00e9\n1/1/2017 0:00,6.559,73.8\n"
              "1/1/2017 0:10,6.414,74.5\n").encode("latin-1")
CHUNK = 16 * 1024


class DataSource:
    """A switchable upstream source; see the module docstring for its modes."""

    def __init__(self, hang_seconds: float = 2.0) -> None:
        self.mode = "ok"
        self.body = b""
        self.status = 200
        self.content_type = "text/csv"
        self.size: int | None = 1 << 30
        self.chunk_delay = 0.0
        self.hang_seconds = hang_seconds
        self.requests: list[dict[str, Any]] = []
        self.sent = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.server = ThreadedServer(self.app)

    def app(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append({"path": request.full_path, "headers": dict(request.headers)})
        if self.mode == "oversized":
            start_response("200 OK", [("Content-Type", "text/csv"), ("Content-Length", str(self.size))])
            return self._withheld()
        if self.mode == "chunked":
            start_response("200 OK", [("Content-Type", "text/csv")])
            return self._stream()
        if self.mode == "fail":
            response = Response("upstream broke", status=500)
        elif self.mode == "hang":
            time.sleep(self.hang_seconds)
            response = Response(self.body, mimetype="text/csv")
        elif self.mode == "garbage":
            response = Response(b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe", mimetype="text/csv")
        elif self.mode == "html":
            response = Response(HTML_PAGE, status=200, content_type="text/html; charset=utf-8")
        elif self.mode == "non-utf8":
            response = Response(LATIN1_CSV, content_type="text/csv")
        elif self.mode == "empty":
            response = Response(b"", content_type="text/csv")
        elif self.mode == "custom":
            response = Response(self.body, status=self.status, content_type=self.content_type)
        else:
            response = Response(self.body, mimetype="text/csv")
        return response(environ, start_response)

    def _withheld(self) -> Iterator[bytes]:
        yield b""  # the status line and headers go out now; the body never does
        self._stopping.wait(60)

    def _stream(self) -> Iterator[bytes]:
        yield b""
        line = b"2017-01-01T00:00:00,6.559,73.8,0.083,0.051,0.119,34055.7,16128.9,20240.96\n"
        chunk = line * (CHUNK // len(line))
        while not self._stopping.is_set() and (self.size is None or self.sent < self.size):
            with self._lock:
                self.sent += len(chunk)
            yield chunk
            if self.chunk_delay:
                time.sleep(self.chunk_delay)

    @property
    def url(self) -> str:
        return f"{self.server.url}/data?start={{start}}&end={{end}}"

    def __enter__(self) -> DataSource:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self.server.stop()
