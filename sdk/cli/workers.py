"""``jetwork workers``: the live workers, as they announce themselves, and work none serves;
``jetwork workers pause`` / ``resume``: stop and restart claims on a worker or a handler."""

from __future__ import annotations

import click

from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import unserved_table, workers_table
from sdk.client import Client
from sdk.client.workers import WorkerList


@click.group(invoke_without_command=True)
@json_option("the workers")
@nats_option
@click.pass_context
def workers(ctx: click.Context, as_json: bool, nats_url: str | None) -> None:
    """List live workers: id, labels, handlers, running jobs, last heartbeat, host, and what is
    paused on them.

    A worker refreshes its entry on every heartbeat; one that misses several is marked stale,
    and its entry disappears within a minute. Below them: the label sets with jobs waiting that
    no live worker serves (they wait until a worker offering those labels or that handler
    starts). `jetwork workers pause` / `resume` stop and restart claims.

    \b
    Examples:
      jetwork workers
      jetwork workers --json | jq '.workers[].labels'
      jetwork workers --json | jq '.unserved[]'
      jetwork workers pause --handler deploy --reason "registry down"
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = nats_url
        return

    async def action(client: Client) -> WorkerList:
        return await client.workers()

    rows = with_client(nats_url, action)
    if as_json:
        print_json(
            {
                "workers": [row.model_dump(mode="json") for row in rows],
                "unserved": [labelset.model_dump(mode="json") for labelset in rows.unserved],
            }
        )
        return
    console = make_console()
    if rows:
        console.print(workers_table(rows))
    else:
        console.print("no live workers")
    if rows.unserved:
        console.print(unserved_table(rows.unserved))


def _target(worker_id: str | None, handler: str | None) -> str:
    if (worker_id is None) == (handler is None):
        raise click.UsageError("name either a WORKER_ID or a handler (--handler NAME)")
    return f"handler {handler}" if handler is not None else f"worker {worker_id}"


@workers.command()
@click.argument("worker_id", required=False)
@click.option("--handler", metavar="NAME", help="Pause this handler's jobs on every worker.")
@click.option("--reason", default="", help="Why (kept with the switch).")
@json_option("the switch set")
@nats_option
@click.pass_context
def pause(
    ctx: click.Context,
    worker_id: str | None,
    handler: str | None,
    reason: str,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Stop new claims on a live worker (WORKER_ID) or a handler (--handler NAME).

    Running jobs finish and report; queued jobs wait for a worker that is not paused. Durable:
    a worker started while its handler is paused starts paused. `jetwork workers` shows what
    is paused; `jetwork workers resume` undoes it.

    \b
    Examples:
      jetwork workers pause w-9b513ae1d821
      jetwork workers pause --handler deploy --reason "registry down"
    """

    target = _target(worker_id, handler)

    async def action(client: Client) -> str:
        return await client.pause_workers(worker_id=worker_id, handler=handler, reason=reason)

    switch = with_client(nats_url or ctx.obj, action)
    if as_json:
        print_json({"paused": target, "switch": switch})
    else:
        click.echo(f"paused {target}: running jobs finish, no new claims")


@workers.command()
@click.argument("worker_id", required=False)
@click.option("--handler", metavar="NAME", help="Resume this handler's jobs on every worker.")
@json_option("whether it was paused")
@nats_option
@click.pass_context
def resume(
    ctx: click.Context,
    worker_id: str | None,
    handler: str | None,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Let a paused worker (WORKER_ID) or handler (--handler NAME) claim jobs again.

    \b
    Examples:
      jetwork workers resume w-9b513ae1d821
      jetwork workers resume --handler deploy
    """

    target = _target(worker_id, handler)

    async def action(client: Client) -> bool:
        return await client.resume_workers(worker_id=worker_id, handler=handler)

    was_paused = with_client(nats_url or ctx.obj, action)
    if as_json:
        print_json({"resumed": target, "was_paused": was_paused})
    elif was_paused:
        click.echo(f"resumed {target}")
    else:
        click.echo(f"{target} was not paused")
