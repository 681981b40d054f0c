"""``jetwork watch``: live events as they are appended, filtered by workflow, job and type."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import click
import orjson

from sdk.cli._common import nats_option, with_client
from sdk.cli._render import event_line, event_record
from sdk.client import Client, event_filter

IDLE_NOTICE: Final = 30.0
"""Seconds without an event after which ``watch`` says again that it is still waiting."""


def watched(workflow_id: str | None, job: str | None, event_type: str | None) -> str:
    """What a watch with these filters waits for, in words, with its subject filter."""
    kind = f"{event_type} events" if event_type else "events"
    of_job = f" of job {job}" if job else ""
    where = f" of workflow {workflow_id}" if workflow_id else " of any workflow"
    return f"{kind}{of_job}{where} ({event_filter(workflow_id, job, event_type)})"


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

    what = watched(workflow_id, job, event_type)  # also checks the filters

    async def action(client: Client) -> None:
        seen = 0
        events = client.subscribe(
            workflow_id=workflow_id, job=job, event_type=event_type, from_start=from_start
        )
        # On stderr: stdout (and --json) carries the events alone.
        click.echo(f"waiting for {what}; Ctrl-C to stop", err=True)
        last = [asyncio.get_running_loop().time()]
        idle = asyncio.create_task(_idle_notices(what, last))
        try:
            async for recorded in events:
                last[0] = asyncio.get_running_loop().time()
                if as_json:
                    click.echo(orjson.dumps(event_record(recorded)).decode())
                else:
                    click.echo(event_line(recorded))
                seen += 1
                if count is not None and seen >= count:
                    await events.aclose()
                    return
        finally:
            idle.cancel()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one stops watching
        with_client(nats_url, action)


async def _idle_notices(what: str, last: list[float]) -> None:
    """Say once per quiet spell of ``IDLE_NOTICE`` seconds that the watch still waits.

    ``last[0]`` is the loop time of the latest event (or of the start).
    """
    loop = asyncio.get_running_loop()
    noticed: float | None = None  # the spell (by its start) that was told already
    while True:
        await asyncio.sleep(1.0)
        spell = last[0]
        if spell != noticed and loop.time() - spell >= IDLE_NOTICE:
            click.echo(f"no event for {IDLE_NOTICE:g}s; still waiting for {what}", err=True)
            noticed = spell
