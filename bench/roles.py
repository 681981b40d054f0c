"""``python -m bench.roles engine|projector|worker|gateway --nats URL ...``: one role per process.

Each runs the library's own object under uvloop, as ``jetwork server`` / ``jetwork worker`` do,
prints ``ready`` on stdout once it serves, and stops cleanly on SIGTERM. Bench workers register
the ``noop`` handler (``uses: noop``: returns at once); shell jobs (``run: true``) need nothing.
``--profile FILE`` records a pyinstrument profile from ``ready`` to the stop (text, or HTML when
FILE ends in ``.html``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from actors.engine import Engine, EngineSettings
from events.connection import NatsSettings, connect
from events.topology import ensure_topology
from projections.projector import Projector, ProjectorSettings
from projections.yielding import lower_cpu_priority
from sdk.runtime import run_service
from sdk.worker import Worker
from sdk.worker.config import WorkerConfig
from sdk.worker.job_context import JobContext


def configure_logging(level: str) -> None:
    """What ``jetwork worker`` does (one line per event on stderr), at ``level``."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def ready() -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(
    args: argparse.Namespace,
    start: Callable[[Any], Awaitable[Any]],
    stop: Callable[[Any], Awaitable[None]],
) -> None:
    nc = await connect(NatsSettings(url=args.nats, name=args.name))
    await ensure_topology(nc.jetstream())
    service = await start(nc)
    with profiling(args.profile):
        ready()
        await until_signalled()
    await stop(service)
    with contextlib.suppress(Exception):
        await nc.drain()


async def run_engine(args: argparse.Namespace) -> None:
    async def start(nc: Any) -> Engine:
        engine = Engine(nc, settings=EngineSettings.from_env())
        await engine.start()
        return engine

    async def stop(engine: Engine) -> None:
        await engine.stop()

    await serve(args, start, stop)


async def run_projector(args: argparse.Namespace) -> None:
    async def start(nc: Any) -> Projector:
        settings = ProjectorSettings.from_env()
        lower_cpu_priority(settings.nice)  # once connected, as `jetwork projector` does
        projector = Projector(nc, settings=settings)
        await projector.start()
        return projector

    async def stop(projector: Projector) -> None:
        await projector.stop()

    await serve(args, start, stop)


async def run_worker(args: argparse.Namespace) -> None:
    labels = frozenset(label for label in args.labels.split(",") if label)
    config = WorkerConfig.from_env(
        nats_url=args.nats,
        worker_id=args.name,
        labels=labels,
        max_concurrent_jobs=args.slots,
        shutdown_grace=10.0,
    )
    worker = Worker(config)

    @worker.job("noop")
    async def noop(ctx: JobContext) -> None:
        return None

    await worker.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.request_shutdown)
    with profiling(args.profile):
        ready()
        await worker.wait_closed()


@contextlib.contextmanager
def profiling(path: str | None) -> Any:
    if not path:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        out = Path(path)
        text = profiler.output_html() if out.suffix == ".html" else profiler.output_text()
        out.write_text(text)


async def run_gateway(args: argparse.Namespace) -> None:
    from gateway.serve import HttpGateway
    from gateway.settings import GatewaySettings

    http = HttpGateway(GatewaySettings(port=args.http_port), nats_url=args.nats)
    await http.start()
    with profiling(args.profile):
        ready()
        await until_signalled()
    await http.stop()


ROLES = {
    "engine": run_engine,
    "projector": run_projector,
    "worker": run_worker,
    "gateway": run_gateway,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.roles", description=__doc__)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--nats", required=True, help="server URL")
    parser.add_argument("--name", default="bench", help="connection name / worker id")
    parser.add_argument("--slots", type=int, default=4, help="worker: max concurrent jobs")
    parser.add_argument("--labels", default="", help="worker: comma-separated labels")
    parser.add_argument("--http-port", type=int, default=3000, help="gateway: loopback port")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    parser.add_argument("--profile", default=None, help="pyinstrument output file")
    args = parser.parse_args()
    configure_logging(args.log_level)
    run_service(ROLES[args.role](args))


if __name__ == "__main__":
    main()
