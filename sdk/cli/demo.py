"""``jetwork demo``: the whole system on one machine, in a temporary directory, in seconds.

An embedded nats-server, the engine, the projector and two workers with different labels run in
this process; the example workflows run with the live view; then the demo says where to go next.
With ``--nats URL`` the demo uses that server instead of the embedded one. ``JETWORK_NATS_URL``
is deliberately ignored: ``make demo`` must work whatever the environment points at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel

from actors.definitions import load_workflow_file
from actors.engine import Engine, EngineSettings
from events.connection import NatsSettings, connect
from events.errors import ServerUnavailable
from events.topology import ensure_topology
from projections.projector import Projector, ProjectorSettings
from projections.reader import Views
from projections.views import WorkflowView
from sdk.cli._common import configure_logging, make_console
from sdk.cli._render import event_sequence, summary_table, workers_table
from sdk.cli.run import needs_of, watch_live
from sdk.client import Client
from sdk.embedded_server import EmbeddedServer
from sdk.worker import Worker
from sdk.worker.config import WorkerConfig

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEFAULT_EXAMPLES = ("hello.yaml", "diamond.yaml", "release.yaml")
WORKERS = (("demo-linux", frozenset({"linux"})), ("demo-gpu", frozenset({"gpu"})))


@dataclass(frozen=True)
class Ran:
    path: Path
    view: WorkflowView


@click.command()
@click.option(
    "--example",
    "examples",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Workflow file(s) to run instead of examples/hello, diamond and release (repeatable).",
)
@click.option(
    "--nats",
    "nats_url",
    metavar="URL",
    default=None,
    help="Run against this NATS server instead of an embedded one. JETWORK_NATS_URL is ignored.",
)
def demo(examples: tuple[Path, ...], nats_url: str | None) -> None:
    """Run example workflows end to end on a throw-away local setup.

    Starts an embedded nats-server in a temporary directory, the engine, the projector and two
    workers (labels `linux` and `gpu`), runs the examples with a live view of each DAG (parallel
    jobs, outputs passed downstream, a retry, conditions, a delayed job), then shows their
    history and logs and prints the commands to try next. Exit 0 when every run succeeded.

    With --nats URL it uses that server instead (still with its own engine, projector and
    workers, which join any already running there; the runs stay in that server's history).
    Only --nats does this: JETWORK_NATS_URL is ignored, so `make demo` is self-contained
    whatever the environment says.

    \b
    Examples:
      jetwork demo
      jetwork demo --example examples/diamond.yaml
      jetwork demo --nats nats://127.0.0.1:4222
    """
    configure_logging(logging.ERROR)
    console = make_console()
    paths = list(examples) or [EXAMPLES / name for name in DEFAULT_EXAMPLES]
    for path in paths:
        load_workflow_file(path)  # every problem, located, before anything starts
    began = time.monotonic()
    if nats_url is not None:
        ran = asyncio.run(_tour(console, nats_url, paths, embedded=False))
    else:
        with tempfile.TemporaryDirectory(prefix="jetwork-demo-") as tmp:
            server = EmbeddedServer(data_dir=Path(tmp) / "nats", sync_interval="always")
            server.start()
            console.print(
                f"[bold]1.[/] embedded nats-server with JetStream on [bold]{server.url}[/] "
                f"[dim](data in {tmp}, removed at the end)[/]"
            )
            try:
                ran = asyncio.run(_tour(console, server.url, paths, embedded=True))
            finally:
                server.stop()
    succeeded = all(item.view.status == "succeeded" for item in ran)
    _next_steps(console, ran, time.monotonic() - began)
    sys.exit(0 if succeeded else 1)


async def _tour(console: Console, url: str, paths: Sequence[Path], *, embedded: bool) -> list[Ran]:
    async with _system(console, url, embedded=embedded) as client:
        ran: list[Ran] = []
        for step, path in enumerate(paths, start=3):
            definition = load_workflow_file(path)
            console.print()
            console.print(f"[bold]{step}.[/] jetwork run {_shown(path)} --wait")
            handle = await client.start(definition)
            view = await watch_live(
                client, handle.workflow_id, console=console, needs=needs_of(definition)
            )
            ran.append(Ran(path, view))
        await _show_audit(console, client, ran)
        return ran


@contextlib.asynccontextmanager
async def _system(console: Console, url: str, *, embedded: bool) -> AsyncIterator[Client]:
    """Engine, projector and two workers on ``url``; yields a client, stops everything after.

    On a server of the user's (not ``embedded``) each worker id gets a random suffix, so that two
    demos on one server, or a worker someone named ``demo-linux``, do not share an id.
    """
    try:
        nc = await connect(NatsSettings(url=url, name="jetwork-demo"))
    except ServerUnavailable:
        raise ServerUnavailable(
            f"cannot reach the NATS server at {url}. Is it running? Leave out --nats to run the "
            "demo on its own embedded server."
        ) from None
    if not embedded:
        console.print(
            f"[bold]1.[/] your nats-server on [bold]{url}[/] "
            "[dim](the demo's runs stay in its history)[/]"
        )
    suffix = "" if embedded else f"-{secrets.token_hex(3)}"
    engine = Engine(nc, settings=EngineSettings(poll_interval=0.2))
    projector = Projector(nc, settings=ProjectorSettings(poll_interval=0.2))
    workers = [
        Worker(
            WorkerConfig(
                nats_url=url,
                worker_id=worker_id + suffix,
                labels=labels,
                max_concurrent_jobs=4,
                poll_interval=0.5,
                heartbeat_interval=2.0,
                lease_ttl=10.0,
            )
        )
        for worker_id, labels in WORKERS
    ]
    try:
        await ensure_topology(nc.jetstream())
        await engine.start()
        await projector.start()
        await asyncio.gather(*(worker.start() for worker in workers))
        labels = ", ".join(f"{w.worker_id} (labels: {', '.join(sorted(w.config.labels))})"
                           for w in workers)  # fmt: skip
        console.print(f"[bold]2.[/] engine, projector and two workers: {labels}")
        yield Client(nc, url=url)
    finally:
        await asyncio.gather(*(worker.stop() for worker in workers), return_exceptions=True)
        with contextlib.suppress(Exception):
            await projector.stop()
        with contextlib.suppress(Exception):
            await engine.stop()
        with contextlib.suppress(Exception):
            await nc.drain()


async def _show_audit(console: Console, client: Client, ran: Sequence[Ran]) -> None:
    """The retried job's log, the list and workers views, and the size of each run's history."""
    for item in ran:
        retried = [name for name, job in item.view.jobs.items() if job.attempts > 1]
        if not retried:
            continue
        job = retried[0]
        console.print(
            f"[bold]logs[/] jetwork logs {item.view.workflow_id} {job}   "
            f"[dim](attempted {item.view.jobs[job].attempts} times)[/]"
        )
        async for line in client.logs(item.view.workflow_id, job):
            style = "red" if line.stream == "stderr" else ""
            console.print(f"  [dim]attempt {line.attempt}[/]  {line.line}", style=style)
        break
    await Views(client.nc).wait_caught_up(timeout=10)
    console.print("[bold]jetwork list[/] [dim](from the projections)[/]")
    console.print(summary_table(await client.list(limit=10)))
    console.print("[bold]jetwork workers[/]")
    console.print(workers_table(await client.workers()))
    for item in ran:
        history = await client.history(item.view.workflow_id)
        kinds = event_sequence([recorded.event.event_type for recorded in history])
        console.print(f"[bold]history[/] {item.view.name}: {len(history)} events [dim]({kinds})[/]")


def _next_steps(console: Console, ran: Sequence[Ran], seconds: float) -> None:
    outcome = ", ".join(f"{item.view.name} {item.view.status}" for item in ran)
    console.print()
    console.print(f"[bold]demo finished[/] in {seconds:.1f}s: {outcome}")
    console.print(
        Panel.fit(
            "\n".join(
                [
                    "[bold]Where to look next[/] (each in its own terminal):",
                    "",
                    "  jetwork server                        # engine + projector + nats-server",
                    "  jetwork worker --labels linux         # runs the jobs",
                    "  jetwork run examples/diamond.yaml --wait",
                    "  jetwork list                          # newest workflows first",
                    "  jetwork history <id>                  # the audit trail, event by event",
                    "  jetwork logs <id> flaky               # a job's log, every attempt",
                    "  jetwork watch --type JobFailed        # events as they happen",
                    "",
                    "README.md describes every command; docs/architecture.md how it works.",
                ]
            ),
            border_style="dim",
        )
    )


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)
