"""A real HTTP server on loopback for the http step's tests (stdlib, in a thread).

Routes: ``GET /ok`` 200 ``{"state": "done"}``; ``POST /echo`` 201 with the JSON body it got and
whether the ``Authorization`` header matched ``secret`` (never the header itself); ``GET /fail``
500; ``GET /job/<name>`` ``running`` for the first ``running_for`` requests of that name, then
``done``; ``GET /slow`` answers after 30 s. Every request is counted in ``hits``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Target:
    def __init__(self, *, secret: str = "", running_for: int = 2) -> None:
        self.secret = secret
        self.running_for = running_for
        self.hits: Counter[str] = Counter()
        self.url = ""
        # Set when the server stops: a slow answer still pending ends with it (not 30 s later,
        # writing to a closed connection while another test captures the output).
        self.stopping = threading.Event()


def _handler(target: Target) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _answer(self, status: int, value: Any) -> None:
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up (a cancelled or timed-out step): nothing to answer

        def do_GET(self) -> None:
            target.hits[self.path] += 1
            if self.path == "/ok":
                self._answer(200, {"state": "done"})
            elif self.path == "/fail":
                self._answer(500, {"error": "boom"})
            elif self.path.startswith("/job/"):
                done = target.hits[self.path] > target.running_for
                self._answer(200, {"state": "done" if done else "running"})
            elif self.path == "/slow":
                if not target.stopping.wait(30):
                    self._answer(200, {})
            else:
                self._answer(404, {"error": "no such route"})

        def do_POST(self) -> None:
            target.hits[self.path] += 1
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            authorized = self.headers.get("Authorization") == f"Bearer {target.secret}"
            self._answer(201, {"got": body, "authorized": authorized, "state": "done"})

    return Handler


@contextmanager
def serving(target: Target) -> Iterator[Target]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(target))
    server.daemon_threads = True
    target.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield target
    finally:
        target.stopping.set()
        server.shutdown()
        server.server_close()
