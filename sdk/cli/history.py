"""``jetwork history ID``: every event of a workflow in log order, the audit trail."""

from __future__ import annotations

import click

from events.base import RecordedEvent
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import event_record, history_table
from sdk.client import Client


@click.command()
@click.argument("workflow_id", metavar="ID")
@json_option("every event (seq, time, subject, actor, type, data)")
@nats_option
def history(workflow_id: str, as_json: bool, nats_url: str | None) -> None:
    """Print every event of a workflow in log order: sequence, time, actor, type, data.

    This is the audit trail: the workflow's state is a fold of exactly these events.

    \b
    Examples:
      jetwork history wf-3f2a9c0d1e4b5a6c7d8e
      jetwork history "$id" --json | jq '.[] | select(.type == "JobFailed")'
    """

    async def action(client: Client) -> list[RecordedEvent]:
        return await client.history(workflow_id)

    events = with_client(nats_url, action)
    if as_json:
        print_json([event_record(recorded) for recorded in events])
    else:
        make_console().print(history_table(workflow_id, events))
