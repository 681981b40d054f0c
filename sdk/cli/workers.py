"""``jetwork workers``: the live workers, as they announce themselves."""

from __future__ import annotations

import click

from projections.reader import WorkerInfo
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import workers_table
from sdk.client import Client


@click.command()
@json_option("the workers")
@nats_option
def workers(as_json: bool, nats_url: str | None) -> None:
    """List live workers: id, labels, handlers, running jobs, last heartbeat, host.

    A worker refreshes its entry on every heartbeat; one that misses several is marked stale,
    and its entry disappears within a minute.

    \b
    Examples:
      jetwork workers
      jetwork workers --json | jq '.[].labels'
    """

    async def action(client: Client) -> list[WorkerInfo]:
        return await client.workers()

    rows = with_client(nats_url, action)
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
    elif rows:
        make_console().print(workers_table(rows))
    else:
        click.echo("no live workers")
