"""Serve this process's metrics over HTTP: ``--metrics HOST:PORT`` / ``JETWORK_METRICS``.

prometheus-client's own server (a thread, so a busy event loop never delays a scrape and a
scrape never costs the loop anything but the reads of the metric values).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from events.errors import JetworkError

ENV: str = "JETWORK_METRICS"


class InvalidMetricsAddress(JetworkError):
    """``--metrics`` / ``JETWORK_METRICS`` is not ``HOST:PORT``."""


def parse_listen(value: str, *, source: str = "--metrics") -> tuple[str, int]:
    """``HOST:PORT`` (``:PORT`` means every interface; port 0: any free one) as (host, port)."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidMetricsAddress(
            f"{source}={value!r}: expected HOST:PORT, e.g. 127.0.0.1:9102 (port 0: any free one)"
        )
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


@dataclass
class MetricsEndpoint:
    server: WSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    @property
    def host(self) -> str:
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(listen: str, *, source: str = "--metrics") -> MetricsEndpoint:
    """Start serving ``/metrics`` on ``listen``; a clear error if the address is bad or taken."""
    host, port = parse_listen(listen, source=source)
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise InvalidMetricsAddress(f"{source}={listen!r}: cannot listen there: {exc}") from None
    return MetricsEndpoint(server, thread)
