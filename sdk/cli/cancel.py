"""``jetwork cancel ID``: ask the engine to cancel a workflow."""

from __future__ import annotations

import click

from sdk.cli._common import nats_option, with_client
from sdk.client import Client


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="Also stop jobs that would run under cancellation (`if: always()` clean-ups).",
)
@click.option("--reason", default="cancelled by user", show_default=True, help="Why, for the log.")
@nats_option
def cancel(workflow_id: str, force: bool, reason: str, nats_url: str | None) -> None:
    """Cancel a workflow: queued jobs are withdrawn, running jobs are told to stop.

    Returns once the request is stored; `jetwork status ID` shows the outcome. Cancelling a
    workflow that has ended changes nothing.

    \b
    Examples:
      jetwork cancel wf-3f2a9c0d1e4b5a6c7d8e
      jetwork cancel "$id" --force --reason "wrong version"
    """

    async def action(client: Client) -> None:
        await client.cancel(workflow_id, reason=reason, force=force)

    with_client(nats_url, action)
    click.echo(f"cancel requested for {workflow_id}" + (" (forced)" if force else ""), err=True)
