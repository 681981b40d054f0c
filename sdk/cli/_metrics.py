"""``--metrics HOST:PORT`` for the long-running commands (server, worker, gateway)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console

from telemetry.endpoint import ENV, MetricsEndpoint, serve_metrics

F = TypeVar("F", bound=Callable[..., Any])


def metrics_option(function: F) -> F:
    decorated: F = click.option(
        "--metrics",
        "metrics_listen",
        metavar="HOST:PORT",
        envvar=ENV,
        default=None,
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free one; "
        f"default: none). [env: {ENV}]",
    )(function)
    return decorated


@contextlib.contextmanager
def serving_metrics(listen: str | None, console: Console) -> Iterator[MetricsEndpoint | None]:
    """Serve the metrics while the command runs (a bad or taken address: a clear error)."""
    if not listen:
        yield None
        return
    endpoint = serve_metrics(listen)
    console.print(f"metrics on [bold]{endpoint.url}[/]")
    try:
        yield endpoint
    finally:
        endpoint.close()
