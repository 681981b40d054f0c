"""``jetwork watch``: live events as they are appended, filtered by workflow, job and type."""

from __future__ import annotations

import contextlib

import click
import orjson

from sdk.cli._common import nats_option, with_client
from sdk.cli._render import event_line, event_record
from sdk.client import Client


@click.command()
@click.option("--workflow", "workflow_id", metavar="ID", help="Only this workflow's events.")
@click.option("--job", metavar="NAME", help="Only events of jobs with this name.")
@click.option("--type", "event_type", metavar="EventType", help="Only this type (e.g. JobFailed).")
@click.option("--from-start", is_flag=True, help="Replay the matching events already stored first.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@nats_option
def watch(
    workflow_id: str | None,
    job: str | None,
    event_type: str | None,
    from_start: bool,
    count: int | None,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Print events live as they happen (Ctrl-C to stop).

    \b
    Examples:
      jetwork watch                              every event of every workflow
      jetwork watch --type JobFailed             every failure, as it happens
      jetwork watch --workflow "$id" --from-start
      jetwork watch --job build --type JobSucceeded --json
    """

    async def action(client: Client) -> None:
        seen = 0
        events = client.subscribe(
            workflow_id=workflow_id, job=job, event_type=event_type, from_start=from_start
        )
        async for recorded in events:
            if as_json:
                click.echo(orjson.dumps(event_record(recorded)).decode())
            else:
                click.echo(event_line(recorded))
            seen += 1
            if count is not None and seen >= count:
                await events.aclose()
                return

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one stops watching
        with_client(nats_url, action)
