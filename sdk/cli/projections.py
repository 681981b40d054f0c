"""``jetwork projections``: maintenance of the views the projector keeps."""

from __future__ import annotations

import dataclasses

import click

from projections.rebuild import MAX_PROCESSES, RebuildStats
from sdk.cli._common import json_option, nats_option, print_json, with_client
from sdk.client import Client


@click.group()
def projections() -> None:
    """Maintain the projections (workflow list, job states, workers).

    \b
    Example:
      jetwork projections rebuild
    """


@projections.command()
@click.option(
    "--processes",
    type=click.IntRange(1, MAX_PROCESSES),
    default=None,
    help="Processes sharing the partitions, this one included "
    f"[default: one per core, at most {MAX_PROCESSES}].",
)
@json_option("the statistics")
@nats_option
def rebuild(processes: int | None, as_json: bool, nats_url: str | None) -> None:
    """Rebuild every projection from the event log, then print what was done.

    Projections are idempotent by stream sequence: the rebuilt views equal the live ones. Run it
    after a projection bucket was lost, or to check that. The partitions are shared out between
    this process and helper processes (one per core by default), which connect as this one does.

    \b
    Example:
      jetwork projections rebuild --nats nats://127.0.0.1:4222
      jetwork projections rebuild --processes 1 --json
    """

    async def action(client: Client) -> RebuildStats:
        return await client.rebuild_projections(processes=processes)

    stats = with_client(nats_url, action)
    if as_json:
        print_json(dataclasses.asdict(stats))
    else:
        click.echo(
            f"rebuilt {stats.workflows} workflow view(s) from {stats.events} event(s) "
            f"in {stats.seconds:.2f}s (generation {stats.generation}, "
            f"{stats.processes} process{'es' if stats.processes > 1 else ''})"
        )
