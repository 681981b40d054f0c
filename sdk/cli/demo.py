"""``jetwork demo``: a guided tour on an embedded nats-server in a temporary directory."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from actors.definitions import load_workflow_file, validate_inputs
from events.catalog import WorkflowStarted
from events.connection import NatsSettings, connect
from events.store import ActorRef, EventStore
from events.topology import Topology, ensure_topology
from sdk.embedded_server import EmbeddedServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@click.command()
@click.option(
    "--example",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Workflow file to use (default: examples/hello.yaml).",
)
def demo(example: Path | None) -> None:
    """Start an embedded JetStream server, create the topology, record and replay a workflow.

    \b
    Example:
      jetwork demo
    """
    console = Console()
    path = example or EXAMPLES / "hello.yaml"
    with tempfile.TemporaryDirectory(prefix="jetwork-demo-") as tmp:
        server = EmbeddedServer(data_dir=Path(tmp) / "nats", sync_interval="always")
        server.start()
        console.print(f"[bold]embedded nats-server[/] {server.url}  (data in {tmp})")
        try:
            asyncio.run(_tour(console, server.url, path))
        finally:
            server.stop()
    console.print("[green]demo finished[/]")


async def _tour(console: Console, url: str, path: Path) -> None:
    nc = await connect(NatsSettings(url=url, name="jetwork-demo"))
    try:
        js = nc.jetstream()
        await ensure_topology(js)
        topology = Topology()
        console.print(
            "[bold]topology[/] streams: "
            + ", ".join(str(stream.name) for stream in topology.streams())
            + "; buckets: "
            + ", ".join(bucket.bucket for bucket in topology.buckets())
        )
        definition = load_workflow_file(path)
        inputs = validate_inputs(definition, {})
        workflow_id = f"demo-{uuid.uuid4().hex[:8]}"
        store = EventStore(nc)
        started = WorkflowStarted(
            workflow_id=workflow_id,
            definition=definition,
            inputs=inputs,
            started_at=datetime.now(UTC),
        )
        seq = await store.append(
            ActorRef.workflow(workflow_id),
            [started],
            expected_seq=0,
            command_id=f"{workflow_id}-start",
        )
        console.print(
            f"[bold]appended[/] WorkflowStarted for {definition.name!r} at sequence {seq}"
        )
        history = await store.history(workflow_id)
        table = Table(title=f"history of {workflow_id}")
        for column in ("seq", "time", "subject", "type"):
            table.add_column(column)
        for recorded in history:
            table.add_row(
                str(recorded.seq),
                recorded.time.isoformat(timespec="milliseconds"),
                recorded.subject,
                recorded.event.event_type,
            )
        console.print(table)
    finally:
        await nc.close()
