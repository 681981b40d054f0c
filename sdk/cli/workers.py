"""``jetwork workers``: the live workers, as they announce themselves, and work none serves."""

from __future__ import annotations

import click

from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import unserved_table, workers_table
from sdk.client import Client
from sdk.client.workers import WorkerList


@click.command()
@json_option("the workers")
@nats_option
def workers(as_json: bool, nats_url: str | None) -> None:
    """List live workers: id, labels, handlers, running jobs, last heartbeat, host.

    A worker refreshes its entry on every heartbeat; one that misses several is marked stale,
    and its entry disappears within a minute. Below them: the label sets with jobs waiting that
    no live worker serves (they wait until a worker offering those labels or that handler
    starts).

    \b
    Examples:
      jetwork workers
      jetwork workers --json | jq '.workers[].labels'
      jetwork workers --json | jq '.unserved[]'
    """

    async def action(client: Client) -> WorkerList:
        return await client.workers()

    rows = with_client(nats_url, action)
    if as_json:
        print_json(
            {
                "workers": [row.model_dump(mode="json") for row in rows],
                "unserved": [labelset.model_dump(mode="json") for labelset in rows.unserved],
            }
        )
        return
    console = make_console()
    if rows:
        console.print(workers_table(rows))
    else:
        console.print("no live workers")
    if rows.unserved:
        console.print(unserved_table(rows.unserved))
