"""``jetwork delete ID``: delete an ended workflow (events, logs, views; a tombstone stays)."""

from __future__ import annotations

import click

from sdk.cli._common import json_option, nats_option, print_json, with_client
from sdk.client import Client
from sdk.deletion import Deleted


@click.command()
@click.argument("workflow_id")
@click.option("--reason", default=None, help="Why, for the tombstone (`history`).")
@click.option(
    "--by", default=None, metavar="NAME", help="Who does it, for the tombstone (default user@host)."
)
@json_option("the outcome")
@nats_option
def delete(
    workflow_id: str, reason: str | None, by: str | None, as_json: bool, nats_url: str | None
) -> None:
    """Delete an ended workflow: its events, logs, view and listing entry.

    Only a workflow that has ended (succeeded, failed, cancelled) can be deleted; an open one is
    refused and left untouched. A `WorkflowDeleted` tombstone stays in the log (`jetwork
    history ID` shows who deleted it and when); `jetwork status ID` then says not found. Running
    it again finishes a deletion that was cut short.

    \b
    Examples:
      jetwork delete 7f3a9c --reason "test run"
    """

    async def action(client: Client) -> Deleted:
        return await client.delete(workflow_id, reason=reason, by=by)

    deleted = with_client(nats_url, action)
    if as_json:
        print_json(
            {
                "workflow_id": deleted.workflow_id,
                "name": deleted.name,
                "status": deleted.status,
                "tombstone_seq": deleted.tombstone_seq,
                "by": deleted.by,
                "at": deleted.at.isoformat(),
            }
        )
        return
    click.echo(f"deleted {deleted.workflow_id} ({deleted.name}, {deleted.status})", err=True)
