"""``jetwork status ID``: a workflow's current state, folded from its history."""

from __future__ import annotations

from typing import Any

import click

from projections.views import WorkflowView
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import workflow_panel
from sdk.cli.progress import summary_lines
from sdk.client import Client


@click.command()
@click.argument("workflow_id", metavar="ID")
@json_option("the status (the stable WorkflowView documented in the README)")
@nats_option
def status(workflow_id: str, as_json: bool, nats_url: str | None) -> None:
    """Show a workflow's status and each job's status, attempts, duration and outputs.

    Read straight from the event log: always current, no projection lag.

    \b
    Examples:
      jetwork status wf-3f2a9c0d1e4b5a6c7d8e
      jetwork status "$id" --json | jq .jobs.build.outputs
    """

    async def action(client: Client) -> tuple[WorkflowView, dict[str, dict[str, Any]]]:
        view = await client.status(workflow_id)
        return view, ({} if as_json else await client.progress_summaries(workflow_id))

    view, progress = with_client(nats_url, action)
    if as_json:
        print_json(view.to_json_dict())
    else:
        console = make_console()
        console.print(workflow_panel(view))
        for line in summary_lines(progress):  # each job's progress summary (ctx.progress)
            console.print(line)
