"""``jetwork logs ID JOB``: a job's log lines, all attempts, optionally followed live."""

from __future__ import annotations

import click

from sdk.cli._common import nats_option, with_client
from sdk.cli.progress import print_frames
from sdk.client import Client
from sdk.client.logs import Claim, LogLine

STDERR_MARK = "[stderr] "


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("job")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the job ends.")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its time.")
@click.option(
    "--progress", "-p", "progress", is_flag=True,
    help="The job's progress frames (ctx.progress) instead of its log lines.",
)  # fmt: skip
@nats_option
def logs(
    workflow_id: str, job: str, follow: bool, timestamps: bool, progress: bool, nats_url: str | None
) -> None:
    """Print the log of one job of a workflow: every attempt, stdout and stderr in the order
    they were written.

    Each attempt starts with a `── attempt N ──` line (also one that printed nothing); a lease
    taken over within an attempt starts a claim of its own (`── attempt N, claim 2 … ──`).
    stderr lines start with `[stderr] ` (red on a terminal); jetwork's own notes (a log over its
    limit) with `[jetwork]`.

    \b
    Examples:
      jetwork logs wf-3f2a9c0d1e4b5a6c7d8e build
      jetwork logs "$id" test --follow
      jetwork logs --progress "$id" transcode -f   # its progress frames, live
    """

    async def action(client: Client) -> None:
        if progress:
            await print_frames(client, workflow_id, job, follow=follow, timestamps=timestamps)
            return
        entries = client.log_entries(workflow_id, job, follow=follow, claims=True)
        async for entry in entries:
            if isinstance(entry, Claim):
                click.echo(click.style(header(entry), dim=True))
            else:
                click.echo(render(entry, timestamps=timestamps))

    with_client(nats_url, action)


def header(claim: Claim) -> str:
    """``── attempt N ──``, with the claim when a lease was taken over within the attempt."""
    if claim.claim == 1 and not claim.again:
        return f"── attempt {claim.attempt} ──"
    if claim.again:
        detail = f"claim {claim.claim}, continued" if claim.claim > 1 else "continued"
    else:
        detail = f"claim {claim.claim}: lease taken over by {claim.worker_id}"
    return f"── attempt {claim.attempt}, {detail} (epoch {claim.epoch}) ──"


def render(line: LogLine, *, timestamps: bool) -> str:
    prefix = line.time.astimezone().strftime("%H:%M:%S.%f")[:-3] + " " if timestamps else ""
    if line.stream == "stderr":
        return prefix + click.style(STDERR_MARK, fg="red") + line.line
    return prefix + line.line
