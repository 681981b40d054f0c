"""``jetwork list``: workflows, newest first, from the projections."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.table import Table

from events.catalog import WorkflowStatus
from projections.views import WorkflowSummary
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import elapsed, styled_status
from sdk.client import Client


@click.command(name="list")
@click.option(
    "--status",
    type=click.Choice([s.value for s in WorkflowStatus]),
    help="Only workflows in this status.",
)
@click.option("--name", metavar="NAME", help="Only workflows with this name.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
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
    table = Table(title_justify="left")
    for column in ("workflow", "name", "status", "started", "duration", "jobs"):
        table.add_column(column)
    for row in rows:
        counts = ", ".join(f"{n} {s}" for s, n in row.job_counts.items() if n)
        started = (
            row.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if row.started_at else ""
        )
        table.add_row(
            row.workflow_id,
            row.name,
            styled_status(row.status),
            started,
            elapsed(row.started_at, row.ended_at, datetime.now(UTC)),
            counts,
        )
    make_console().print(table if rows else "no workflows")
