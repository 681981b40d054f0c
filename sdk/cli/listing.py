"""``jetwork list``: workflows, newest first, from the projections."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from events.catalog import WorkflowStatus
from projections.search import parse_moment
from projections.views import WorkflowSummary
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import summary_table
from sdk.client import Client


def moment(text: str | None, *, now: datetime, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, now=now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def pair(text: str, *, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint=option)
    return key, value


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
@click.option(
    "--since",
    metavar="WHEN",
    help="Only workflows started at or after WHEN: a duration ago (2h, 7d) or RFC 3339.",
)
@click.option(
    "--until",
    metavar="WHEN",
    help="Only workflows started at or before WHEN: a duration ago (30m) or RFC 3339.",
)
@click.option(
    "-i",
    "--input",
    "input_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only workflows started with this input (repeatable; non-strings compare as JSON).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="LABEL",
    help="Only workflows with a job needing this label (repeatable: all of them).",
)
@click.option(
    "--parent",
    "--children-of",
    "parent",
    metavar="ID",
    help="Only sub-workflows started by workflow ID.",
)
@json_option("the rows")
@nats_option
def list_workflows(
    status: str | None,
    name: str | None,
    limit: int,
    since: str | None,
    until: str | None,
    input_pairs: tuple[str, ...],
    labels: tuple[str, ...],
    parent: str | None,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """List workflows, newest first, with their job counts.

    Served by the projections (`jetwork server` runs the projector); a run that just started
    may take a moment to appear.

    \b
    Examples:
      jetwork list
      jetwork list --status failed --name release --limit 10
      jetwork list --since 2h --input env=prod --label gpu
      jetwork list --since 2026-12-01T00:00:00Z --until 2026-12-02T00:00:00Z
      jetwork list --parent 7f3a9c
    """
    now = datetime.now(UTC)
    started_from = moment(since, now=now, option="--since")
    started_to = moment(until, now=now, option="--until")
    inputs = dict(pair(text, option="--input") for text in input_pairs)

    async def action(client: Client) -> list[WorkflowSummary]:
        return await client.list(
            status=status,
            name=name,
            limit=limit,
            since=started_from,
            until=started_to,
            inputs=inputs,
            labels=labels,
            parent=parent,
        )

    rows = with_client(nats_url, action)
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    make_console().print(summary_table(rows) if rows else "no workflows")
