"""``jetwork gateway``: the HTTP gateway alone (``jetwork server`` serves it too, by default).

The options are shared with ``jetwork server`` (``http_options``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from events.errors import JetworkError
from sdk.cli._common import configure_logging, log_format_option, make_console, nats_option
from sdk.cli._metrics import metrics_option, serving_metrics
from sdk.runtime import run_service

F = TypeVar("F", bound=Callable[..., Any])
STOP_TIMEOUT = 15.0


def http_options(*, optional: bool) -> Callable[[F], F]:
    """``--http HOST:PORT``, ``--tokens-file``, ``--insecure`` (and ``--no-http`` if optional)."""

    def decorate(function: F) -> F:
        options = [
            click.option(
                "--http",
                "http_listen",
                metavar="HOST:PORT",
                default=None,
                help="Where the HTTP gateway listens. [env: JETWORK_HTTP; default 127.0.0.1:3000]",
            ),
            click.option(
                "--tokens-file",
                type=click.Path(dir_okay=False),
                default=None,
                help="Bearer tokens, role:token per line (roles: worker, client, admin). "
                "[env: JETWORK_HTTP_TOKENS_FILE; or JETWORK_HTTP_TOKENS=role:token,...]",
            ),
            click.option(
                "--insecure",
                is_flag=True,
                help="Serve a non-loopback address without tokens (refused otherwise).",
            ),
        ]
        if optional:
            options.append(click.option("--no-http", is_flag=True, help="Serve no HTTP."))
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def gateway_settings(http_listen: str | None, tokens_file: str | None, insecure: bool) -> Any:
    """The settings from flags and variables; a bad value or an exposed address is one line."""
    from gateway.settings import GatewaySettings, InvalidGatewaySetting

    try:
        settings = GatewaySettings.from_env(
            listen=http_listen, tokens_file=tokens_file, insecure=insecure
        )
    except InvalidGatewaySetting as exc:
        raise JetworkError(f"invalid HTTP setting: {exc}") from None
    problem = settings.check_exposure()
    if problem is not None:
        raise JetworkError(problem)
    return settings


@click.command()
@http_options(optional=False)
@metrics_option
@log_format_option
@nats_option
def gateway(
    http_listen: str | None,
    tokens_file: str | None,
    insecure: bool,
    metrics_listen: str | None,
    log_format: str,
    nats_url: str | None,
) -> None:
    """Serve the HTTP gateway alone until SIGTERM or Ctrl-C (no engine, no projector).

    Workers in any language join over HTTP + JSON (workflow-graph's worker protocol) and clients
    start, watch and cancel workflows (docs/http.md). It keeps no state: run several behind a
    load balancer, each connected to NATS. Loopback needs no token; any other address needs
    tokens (or --insecure).

    \b
    Examples:
      jetwork gateway                                   # http://127.0.0.1:3000
      JETWORK_HTTP_TOKENS=worker:w0rker-s3cret,admin:4dmin-s3cret \
        jetwork gateway --http 0.0.0.0:3000
      jetwork gateway --nats nats://nats.internal:4222 --tokens-file /etc/jetwork/tokens
    """
    settings = gateway_settings(http_listen, tokens_file, insecure)
    configure_logging(logging.INFO, json=log_format == "json")
    console = make_console(stderr=True)
    url = nats_url or os.environ.get("JETWORK_NATS_URL") or None
    try:
        with serving_metrics(metrics_listen, console):
            run_service(_serve(settings, url, console))
    except asyncio.CancelledError:
        sys.exit(130)
    console.print("stopped")


async def _serve(settings: Any, nats_url: str | None, console: Console) -> None:
    from gateway.serve import HttpGateway
    from sdk.cli.server import until_signalled

    http = HttpGateway(settings, nats_url=nats_url)
    await http.start()
    try:
        console.print(f"[green]ready[/]: HTTP gateway on [bold]{http.url}[/] (Ctrl-C to stop)")
        await until_signalled()
        console.print("stopping… (Ctrl-C again to force)")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(http.stop(), STOP_TIMEOUT)
