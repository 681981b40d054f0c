"""``jetwork limits``: operators' rate limits per handler or label set (``limits set`` /
``delete``), and the starts counted in each one's current window."""

from __future__ import annotations

import click
from rich.table import Table

from actors.definitions import format_duration
from actors.definitions.durations import parse_duration
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.client import Client
from sdk.client.rate_limits import RateLimitView, limited_key


def _labels(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(x.strip() for x in value.split(",") if x.strip())


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(invoke_without_command=True)
@json_option("the limits")
@nats_option
@click.pass_context
def limits(ctx: click.Context, as_json: bool, nats_url: str | None) -> None:
    """List operators' rate limits: at most LIMIT starts per window, across every worker.

    For each: the handler or label set it covers, the limit, the starts counted in the current
    window and when it ends. A job's own `rate_limit:` (docs/workflows.md) holds as well.
    `jetwork limits set` / `delete` change them; workers follow at once.

    \b
    Examples:
      jetwork limits
      jetwork limits set --handler charge --limit 100 --per 60s
      jetwork limits delete --handler charge
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = nats_url
        return

    async def action(client: Client) -> list[RateLimitView]:
        return await client.rate_limits()

    rows = with_client(nats_url, action)
    if as_json:
        print_json({"limits": [row.to_json_dict() for row in rows]})
        return
    console = make_console()
    if not rows:
        console.print("no rate limits set (jetwork limits set --help)")
        return
    table = Table("covers", "limit", "this window", "ends in", "set by", "why")
    for row in rows:
        started = f"{row.started_in_window}" + (" [yellow](full)[/]" if row.full else "")
        table.add_row(f"{row.kind} {row.name}", f"{row.limit} per {format_duration(row.per)}",
                      started, f"{row.window_ends_in:.1f}s", row.by, row.reason)  # fmt: skip
    console.print(table)


@limits.command(name="set")
@click.option("--handler", metavar="NAME", help="Limit this handler's jobs (uses: NAME).")
@click.option("--labels", metavar="A,B", help="Limit the jobs routed to exactly these labels.")
@click.option("--limit", type=click.IntRange(min=1), required=True, help="Starts per window.")
@click.option("--per", required=True, callback=_duration, help="The window: 1s, 60s, 1h (≤ 1d).")
@click.option("--reason", default="", help="Why (kept with the limit).")
@json_option("the key set")
@nats_option
@click.pass_context
def set_limit(
    ctx: click.Context,
    handler: str | None,
    labels: str | None,
    limit: int,
    per: float,
    reason: str,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """At most --limit starts of a handler's (or label set's) jobs per --per, across every
    worker and gateway. Starts over the limit wait, queued, until a window has room.

    \b
    Examples:
      jetwork limits set --handler charge --limit 100 --per 60s --reason "PSP quota"
      jetwork limits set --labels gpu --limit 4 --per 1s
    """
    limited_key(handler, _labels(labels))  # what it covers, checked before connecting

    async def action(client: Client) -> str:
        return await client.set_rate_limit(
            limit=limit, per=per, handler=handler, labels=_labels(labels), reason=reason
        )

    key = with_client(nats_url or ctx.obj, action)
    if as_json:
        print_json({"key": key, "limit": limit, "per": per})
    else:
        click.echo(f"limited {key.removeprefix('limit.')}: {limit} per {format_duration(per)}")


@limits.command(name="delete")
@click.option("--handler", metavar="NAME", help="The handler's limit.")
@click.option("--labels", metavar="A,B", help="The label set's limit.")
@json_option("whether there was one")
@nats_option
@click.pass_context
def delete_limit(
    ctx: click.Context, handler: str | None, labels: str | None, as_json: bool,
    nats_url: str | None,
) -> None:  # fmt: skip
    """Lift an operator's rate limit (a job's own `rate_limit:` still holds).

    \b
    Examples:
      jetwork limits delete --handler charge
    """
    limited_key(handler, _labels(labels))

    async def action(client: Client) -> bool:
        return await client.delete_rate_limit(handler=handler, labels=_labels(labels))

    existed = with_client(nats_url or ctx.obj, action)
    if as_json:
        print_json({"deleted": existed})
    else:
        click.echo("limit lifted" if existed else "there was no such limit")
