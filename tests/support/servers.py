"""WSGI apps served on 127.0.0.1 in a background thread, stopped by the test."""

from __future__ import annotations

import logging
import threading
from typing import Any

from werkzeug.serving import make_server

from tools.emulators import free_port

# The servers stand in for other parties (upstream sources, subscribers); their
# access log is not ours and would mix into the log assertions.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class ThreadedServer:
    """Serve a WSGI app on a free local port until ``stop``."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)
