"""A data source on 127.0.0.1 whose behaviour a test switches: ok, fail, hang, garbage."""

from __future__ import annotations

import threading
import time
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.support.servers import ThreadedServer


class DataSource:
    """Serves ``body`` (CSV) in mode ``ok``; 500 in ``fail``; sleeps in ``hang``; junk in ``garbage``."""

    def __init__(self, hang_seconds: float = 2.0) -> None:
        self.mode = "ok"
        self.body = b""
        self.hang_seconds = hang_seconds
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.server = ThreadedServer(self.app)

    def app(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.requests.append({"path": request.full_path, "headers": dict(request.headers)})
        if self.mode == "fail":
            response = Response("upstream broke", status=500)
        elif self.mode == "hang":
            time.sleep(self.hang_seconds)
            response = Response(self.body, mimetype="text/csv")
        elif self.mode == "garbage":
            response = Response(b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe", mimetype="text/csv")
        else:
            response = Response(self.body, mimetype="text/csv")
        return response(environ, start_response)

    @property
    def url(self) -> str:
        return f"{self.server.url}/data?start={{start}}&end={{end}}"

    def __enter__(self) -> DataSource:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
