"""``jetwork server``: the engine and the projector, on an embedded or an existing nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import click
import structlog
from rich.console import Console

from actors.definitions import parse_duration
from actors.engine import Engine, EngineSettings
from actors.scheduler import Ticker
from events.connection import NatsSettings, connect
from events.errors import JetworkError
from events.nats_auth import process_auth
from events.topology import ensure_topology
from projections.projector import ProjectorSettings
from sdk.auth_setup import RoleSecrets
from sdk.cli._common import configure_logging, log_format_option, make_console, nats_option
from sdk.cli._metrics import metrics_option, serving_metrics
from sdk.cli.gateway import gateway_settings, http_options
from sdk.cli.projector_process import ProjectorProcess
from sdk.deletion import Retention
from sdk.embedded_server import EmbeddedServer
from sdk.runtime import run_service
from sdk.worker.http_steps import http_step_worker
from telemetry import tracing
from telemetry.sampler import Sampler, interval_from_env

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from gateway.settings import GatewaySettings

_log = structlog.get_logger("jetwork.server")
STOP_TIMEOUT: Final = 15.0
"""Seconds each part may take to stop before the server gives up on it."""


_SYNC_INTERVAL: Final = re.compile(r"^(always|[1-9][0-9]*(ms|s|m|h))$")


def _check_sync_interval(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not _SYNC_INTERVAL.match(value):
        raise click.BadParameter(f"{value!r}: use 'always' or a duration such as 500ms, 10s, 2m")
    return value


def _check_retention(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> timedelta | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: a retention must be longer than 0s")
    return timedelta(seconds=seconds)


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".jetwork"),
    show_default=True,
    help="Where the embedded nats-server keeps its data (in <data-dir>/nats).",
)
@click.option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=4222,
    show_default=True,
    help="Port of the embedded nats-server (0: any free port).",
)
@click.option(
    "--sync-interval",
    envvar="JETWORK_NATS_SYNC_INTERVAL",
    default="always",
    show_default=True,
    callback=_check_sync_interval,
    help="fsync cadence of the embedded nats-server: 'always' (no acknowledged write lost on "
    "power failure) or a duration such as 2m (NATS's default: faster, may lose that much of "
    "acknowledged writes on an OS crash). [env: JETWORK_NATS_SYNC_INTERVAL]",
)
@click.option("--no-projector", is_flag=True, help="Run the engine only.")
@click.option(
    "--auth",
    is_flag=True,
    help="Start the embedded nats-server with least-privilege roles (engine, projector, worker, "
    "client, gateway, admin: docs/reliability.md) and fresh passwords, each part of the server "
    "connecting as its role; writes <data-dir>/auth/<role>.env for local workers and clients.",
)
@click.option(
    "--retention",
    envvar="JETWORK_RETENTION",
    default=None,
    metavar="AGE",
    callback=_check_retention,
    help="Delete workflows that ended more than AGE ago (30d, 12h): events, logs, views; "
    "default: keep all. [env: JETWORK_RETENTION]",
)
@http_options(optional=True)
@metrics_option
@log_format_option
@nats_option
def server(
    data_dir: Path,
    port: int,
    sync_interval: str,
    no_projector: bool,
    auth: bool,
    retention: timedelta | None,
    http_listen: str | None,
    tokens_file: str | None,
    insecure: bool,
    no_http: bool,
    metrics_listen: str | None,
    log_format: str,
    nats_url: str | None,
) -> None:
    """Run the engine, the projector and the HTTP gateway until SIGTERM or Ctrl-C.

    With --nats or JETWORK_NATS_URL set it uses that server; otherwise it starts the embedded
    nats-server (JetStream, data in <data-dir>/nats, fsync always) and prints its URL. It creates
    the streams and buckets if needed. Run as many as you like: engines share the work, and
    their tickers start one run per tick of each schedule (`jetwork schedules`).
    The HTTP gateway (workers in any language, the client API: docs/http.md) listens on
    127.0.0.1:3000 unless --no-http; `jetwork gateway` runs it alone.

    \b
    Examples:
      jetwork server
      jetwork server --port 4333 --data-dir /var/lib/jetwork
      jetwork server --nats nats://nats.internal:4222
      jetwork server --sync-interval 2m     # faster, see docs/reliability.md
      jetwork server --http 127.0.0.1:8080  # the HTTP gateway elsewhere (--no-http: none)
      jetwork server --metrics 127.0.0.1:9102  # Prometheus metrics (the gateway's /metrics too)
      jetwork server --auth                 # roles; then: set -a; . .jetwork/auth/worker.env
      jetwork server --retention 30d        # delete workflows that ended 30 days ago
    """
    try:  # before anything starts: a bad variable is one line, not a traceback
        engine_settings = EngineSettings.from_env()
        projector_settings = ProjectorSettings.from_env() if not no_projector else None
        sample_every = interval_from_env() if metrics_listen else None
    except ValueError as exc:
        raise JetworkError(f"invalid setting: {exc}") from None
    http = None if no_http else gateway_settings(http_listen, tokens_file, insecure)
    url = nats_url or os.environ.get("JETWORK_NATS_URL") or None
    if auth and url is not None:
        raise JetworkError(
            f"--auth starts the embedded server with roles, but a server is given ({url}): "
            "configure your own server's users with nats/roles.conf (docs/reliability.md)"
        )
    configure_logging(logging.INFO, json=log_format == "json")
    console = make_console(stderr=True)
    with serving_metrics(metrics_listen, console) as metrics:
        _run_server(
            console,
            url,
            Parts(
                engine_settings,
                projector_settings,
                http,
                sample_every if metrics else None,
                retention=retention,
                log_format=log_format,
            ),
            roles=RoleSecrets.generate(data_dir / "auth") if auth else None,
            data_dir=data_dir,
            port=port,
            sync_interval=sync_interval,
        )


@dataclass(frozen=True)
class Parts:
    """What ``jetwork server`` runs beside the engine."""

    engine: EngineSettings
    projector: ProjectorSettings | None
    http: GatewaySettings | None
    sample_every: float | None  # seconds between samples of queue depth and projector lag
    retention: timedelta | None = None  # delete workflows ended longer ago (sdk.deletion)
    log_format: str = "console"  # the projector process's too


def _run_server(
    console: Console,
    url: str | None,
    parts: Parts,
    *,
    roles: RoleSecrets | None,
    data_dir: Path,
    port: int,
    sync_interval: str,
) -> None:
    embedded: EmbeddedServer | None = None
    if url is None:
        embedded = EmbeddedServer(
            data_dir=data_dir / "nats", port=port, sync_interval=sync_interval,
            extra_config=roles.server_config() if roles else None,
        )  # fmt: skip
        embedded.start()
        url = embedded.url
        where = data_dir / "nats"
        for pid in embedded.stopped_orphans:
            console.print(
                f"[yellow]stopped an orphaned nats-server[/] (pid {pid}) still running on {where}: "
                "a jetwork server was killed before it could stop it"
            )
        console.print(
            f"[bold]embedded nats-server[/] on [bold]{url}[/] (data in {where}, "
            f"sync_interval {sync_interval})"
        )
        if roles is not None:
            roles.write_env_files(url)
            console.print(
                f"roles on: each role's variables are in {roles.directory}/<role>.env "
                f"(owner-only), e.g. [bold]set -a; . {roles.env_file('worker')}; set +a[/]"
            )
        else:
            console.print(
                f"point workers and clients at it:  [bold]export JETWORK_NATS_URL={url}[/]"
            )
    try:
        run_service(_serve(url, console, parts, roles))
    except asyncio.CancelledError:
        console.print("forced to stop: unfinished work will be redelivered")
        sys.exit(130)
    finally:
        if embedded is not None:
            embedded.stop()
    console.print("stopped")


async def _serve(url: str, console: Console, parts: Parts, roles: RoleSecrets | None) -> None:
    tracing.configure_from_env("jetwork-server")
    connections = Connections(url, roles)
    services: list[Service] = []
    projector_settings = parts.projector
    try:
        await ensure_topology((await connections.as_role("admin")).jetstream())
        engine_nc = await connections.as_role("engine")
        services.append(Engine(engine_nc, settings=parts.engine))
        services.append(Ticker(engine_nc))  # schedules: a run per tick (actors/scheduler.py)
        if projector_settings is not None:
            # Its own process, at a lower CPU priority: the execution path goes first (and it
            # reads its settings from the environment, checked above).
            identity = roles.auth("projector") if roles is not None else process_auth()
            services.append(ProjectorProcess(url, auth=identity, log_format=parts.log_format))
        if parts.sample_every is not None:
            # It reads consumers' states and the projections: the admin's, not a narrower role.
            services.append(Sampler(await connections.as_role("admin"), every=parts.sample_every))
        if parts.retention is not None:
            # It appends tombstones and purges the events stream: the admin's (reliability.md).
            services.append(
                Retention(await connections.as_role("admin"), retention=parts.retention)
            )
        # http: steps run in a worker of the server's own (sdk/worker/http_steps.py), as a worker.
        services.append(http_step_worker(url, auth=roles.auth("worker") if roles else None))
        http = None
        if parts.http is not None:
            from gateway.serve import HttpGateway

            # Its own connection: the gateway watches its KV buckets afresh on reconnection.
            auth = roles.auth("gateway") if roles is not None else None
            http = HttpGateway(parts.http, nats_url=url, auth=auth)
            services.append(http)
        for service in services:
            await service.start()
        what = "engine and projector (its own process)" if projector_settings else "engine"
        console.print(f"[green]ready[/]: {what} on {url} (Ctrl-C to stop)")
        if http is not None:
            console.print(f"HTTP gateway on [bold]{http.url}[/] (API reference: {http.url}/docs)")
        await until_signalled()
        console.print("stopping… (Ctrl-C again to force)")
    finally:
        for service in reversed(services):
            try:
                await asyncio.wait_for(service.stop(), STOP_TIMEOUT)
            except Exception as exc:
                _log.warning("service did not stop cleanly", service=type(service).__name__,
                             error=str(exc) or type(exc).__name__)  # fmt: skip
        await connections.drain(STOP_TIMEOUT)
        tracing.shutdown()  # export the spans still pending


class Connections:
    """The server's NATS connections: one shared by every part, or one per role (``--auth``)."""

    def __init__(self, url: str, roles: RoleSecrets | None) -> None:
        self._url, self._roles = url, roles
        self._open: dict[str, NATS] = {}

    async def as_role(self, role: str) -> NATS:
        key = role if self._roles is not None else "server"
        if key not in self._open:
            auth = self._roles.auth(role) if self._roles is not None else None
            self._open[key] = await connect(
                NatsSettings(url=self._url, name=f"jetwork-{key}", auth=auth)
            )
        return self._open[key]

    async def drain(self, timeout: float) -> None:
        for nc in self._open.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), timeout)


async def until_signalled() -> None:
    """Return on the first SIGINT/SIGTERM; a second one cancels the shutdown that follows."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
