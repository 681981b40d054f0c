"""``jetwork logs ID JOB``: a job's log lines, all attempts, optionally followed live."""

from __future__ import annotations

import click

from sdk.cli._common import nats_option, with_client
from sdk.client import Client


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("job")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its time.")
@nats_option
def logs(workflow_id: str, job: str, follow: bool, timestamps: bool, nats_url: str | None) -> None:
    """Print the log of one job of a workflow (stdout and stderr, every attempt, in order).

    A line from stderr is printed to stderr. Each attempt after the first starts with a
    `── attempt N ──` line.

    \b
    Examples:
      jetwork logs wf-3f2a9c0d1e4b5a6c7d8e build
      jetwork logs "$id" test --follow
    """

    async def action(client: Client) -> None:
        attempt = 0
        async for line in client.logs(workflow_id, job, follow=follow):
            if line.attempt != attempt:
                if attempt or line.attempt > 1:
                    click.echo(click.style(f"── attempt {line.attempt} ──", dim=True))
                attempt = line.attempt
            prefix = line.time.astimezone().strftime("%H:%M:%S.%f")[:-3] + " " if timestamps else ""
            click.echo(prefix + line.line, err=line.stream == "stderr")

    with_client(nats_url, action)
