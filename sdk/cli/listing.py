"""``jetwork list``: workflows, newest first, from the projections."""

from __future__ import annotations

import click

from events.catalog import WorkflowStatus
from projections.views import WorkflowSummary
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import summary_table
from sdk.client import Client


@click.command(name="list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in WorkflowStatus]),
    help="Only workflows in this status.",
)
@click.option("--name", metavar="NAME", help="Only workflows with this name.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="At most this many rows.",
)
@json_option("the rows")
@nats_option
def list_workflows(
    status: str | None, name: str | None, limit: int, as_json: bool, nats_url: str | None
) -> None:
    """List workflows, newest first, with their job counts.

    Served by the projections (`jetwork server` runs the projector); a run that just started
    may take a moment to appear.

    \b
    Examples:
      jetwork list
      jetwork list --status failed --name release --limit 10
    """

    async def action(client: Client) -> list[WorkflowSummary]:
        return await client.list(status=status, name=name, limit=limit)

    rows = with_client(nats_url, action)
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    make_console().print(summary_table(rows) if rows else "no workflows")
