"""``jetwork projector``: a projector alone, in a process of its own, yielding the CPU.

``jetwork server`` starts one this way (``sdk.cli.projector_process``); run more beside engines
on other machines with ``jetwork server --no-projector`` (projectors share the partitions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

import click
import structlog
from rich.console import Console

from events.connection import NatsSettings, connect
from events.errors import JetworkError
from projections.projector import Projector, ProjectorSettings
from projections.yielding import lower_cpu_priority
from sdk.cli._common import configure_logging, log_format_option, make_console, nats_option
from sdk.runtime import run_service

READY: str = "projector ready"
"""The line the process prints on stdout once it projects (what ``jetwork server`` waits for)."""
STOP_TIMEOUT = 15.0
_log = structlog.get_logger("jetwork.projector")


@click.command()
@click.option(
    "--with-parent",
    is_flag=True,
    hidden=True,
    help="Stop when stdin closes: the process that started this one is gone.",
)
@log_format_option
@nats_option
def projector(with_parent: bool, log_format: str, nats_url: str | None) -> None:
    """Run a projector alone until SIGTERM or Ctrl-C, at a lower CPU priority.

    It folds the event log into the views that `jetwork list`, `status`, the HTTP API and the
    web UI read. `jetwork server` starts one in a process of its own; run more for more
    throughput, or beside `jetwork server --no-projector`: projectors share the partitions.

    Its niceness (JETWORK_PROJECTOR_NICE, default 10; 0 leaves it as it is) lets the engine,
    the workers and nats-server go first when the machine is busy: views then catch up after
    the burst, in larger and cheaper batches (docs/performance.md).

    \b
    Examples:
      jetwork projector --nats nats://nats.internal:4222
      JETWORK_PROJECTOR_NICE=0 jetwork projector   # at the priority it was started with
    """
    try:  # before anything starts: a bad variable is one line, not a traceback
        settings = ProjectorSettings.from_env()
    except ValueError as exc:
        raise JetworkError(f"invalid setting: {exc}") from None
    configure_logging(logging.INFO, json=log_format == "json")
    console = make_console(stderr=True)
    url = nats_url or os.environ.get("JETWORK_NATS_URL") or None
    try:
        run_service(_serve(settings, url, console, with_parent=with_parent))
    except asyncio.CancelledError:
        sys.exit(130)
    console.print("stopped")


async def _serve(
    settings: ProjectorSettings,
    url: str | None,
    console: Console,
    *,
    with_parent: bool,
) -> None:
    from sdk.cli.server import until_signalled

    nats = NatsSettings.from_env(url=url, name="jetwork-projector")
    nc = await connect(nats)
    # Once connected: a server out of reach is an error at the priority it was asked at. The
    # loop's thread is the one that works (Linux keeps a niceness per thread).
    niceness = lower_cpu_priority(settings.nice)
    projector = Projector(nc, settings=settings)
    try:
        await projector.start()
        if not with_parent:  # (else the server says it is ready, for its parts together)
            console.print(f"[green]ready[/]: projector on {nats.url}, "
                          f"niceness {niceness} (Ctrl-C to stop)")  # fmt: skip
        print(READY, flush=True)
        watch = asyncio.create_task(_stop_when_stdin_closes()) if with_parent else None
        try:
            await until_signalled()
        finally:
            if watch is not None:
                watch.cancel()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(projector.stop(), STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), STOP_TIMEOUT)


async def _stop_when_stdin_closes() -> None:
    """SIGTERM this process once stdin reaches its end: the parent closed it, or died. A parent
    killed outright (SIGKILL) leaves no orphan projector behind."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (OSError, ValueError, NotImplementedError) as exc:  # not a pipe; or no such loop API
        _log.warning("cannot watch stdin: this projector outlives its parent if that is killed",
                     error=repr(exc))  # fmt: skip
        return
    while await reader.read(4096):
        pass
    _log.info("the process that started this projector is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)
