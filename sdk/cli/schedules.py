"""``jetwork schedules [add|pause|resume|delete]``: start a workflow at each tick of its
``schedule:`` (the ticker runs in ``jetwork server``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from actors.definitions import load_workflow_file
from events.definition import ScheduleRule
from events.schedule_store import ScheduleEntry
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli.run import parse_inputs
from sdk.client import Client
from sdk.client.control import default_operator


def describe_rule(rule: ScheduleRule) -> str:
    if rule.every is not None:
        text = f"every {rule.every:g}s"
    else:
        text = f"cron {rule.cron}" + (f" ({rule.timezone})" if rule.timezone else " (UTC)")
    extras = [f"catch_up {rule.catch_up}"] if rule.catch_up != "last" else []
    extras += [f"overlap {rule.overlap}"] if rule.overlap != "allow" else []
    return text + (f" [{', '.join(extras)}]" if extras else "")


def entry_json(entry: ScheduleEntry) -> dict[str, Any]:
    data = entry.model_dump(mode="json", exclude={"definition", "generation"})
    data["workflow"] = entry.definition.name
    data["version"] = entry.definition.version
    data["rules"] = [rule.model_dump(mode="json") for rule in entry.definition.schedule]
    if entry.paused:
        data["next_tick"] = None
    return data


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if moment else ""


@click.group(invoke_without_command=True)
@json_option("the schedules")
@nats_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool, nats_url: str | None) -> None:
    """List schedules with their next tick; or add, pause, resume or delete one.

    A workflow file with a top-level `schedule:` (cron rules with an optional timezone,
    `every:` periods) is added with `jetwork schedules add FILE`; `jetwork server` then starts
    one run per tick, whatever number of servers run (docs/workflows.md, "Schedules").

    \b
    Examples:
      jetwork schedules add examples/nightly.yaml -i target=staging
      jetwork schedules
      jetwork schedules pause nightly
      jetwork schedules resume nightly
      jetwork schedules delete nightly
    """
    if ctx.invoked_subcommand is not None:
        return

    async def action(client: Client) -> list[ScheduleEntry]:
        return await client.schedules()

    entries = with_client(nats_url, action)
    if as_json:
        print_json([entry_json(entry) for entry in entries])
        return
    if not entries:
        click.echo("no schedules (jetwork schedules add FILE)")
        return
    table = Table("name", "rules", "next tick", "last run", "state")
    for entry in entries:
        state = f"paused by {entry.paused_by}" if entry.paused else "active"
        if entry.note and not entry.paused:
            state += f" ({entry.note})"
        table.add_row(
            entry.name,
            "\n".join(describe_rule(rule) for rule in entry.definition.schedule),
            "" if entry.paused else _when(entry.next_tick),
            f"{entry.last_run or ''}\n{_when(entry.last_tick)}".strip(),
            state,
        )
    make_console().print(table)


@schedules.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--input", "-i", "inputs", multiple=True, metavar="KEY=VALUE",
              help="An input of every run (repeatable); JSON values are typed.")  # fmt: skip
@click.option("--name", metavar="NAME", help="The schedule's name (default: the workflow's).")
@json_option("the schedule")
@nats_option
def add(
    file: Path, inputs: tuple[str, ...], name: str | None, as_json: bool, nats_url: str | None
) -> None:
    """Schedule the workflow in FILE (it must have a `schedule:`): a run per tick.

    Adding it again with other content or inputs replaces it from its next tick; with the same
    content it changes nothing and says so.
    """
    given = parse_inputs(inputs)
    definition = load_workflow_file(file)

    async def action(client: Client) -> tuple[ScheduleEntry, bool]:
        return await client.add_schedule(definition, inputs=given, name=name)

    entry, changed = with_client(nats_url, action)
    if as_json:
        print_json({**entry_json(entry), "changed": changed})
    elif not changed:
        click.echo(f"unchanged: schedule {entry.name} holds this already")
    else:
        tail = "paused" if entry.paused else f"next tick {_when(entry.next_tick)}"
        click.echo(f"scheduled {entry.name}: {tail}")


@schedules.command()
@click.argument("name")
@click.option("--by", default=None, metavar="NAME", help="Who pauses it (default user@host).")
@nats_option
def pause(name: str, by: str | None, nats_url: str | None) -> None:
    """Start no run for NAME's ticks until it is resumed (runs in progress go on)."""

    async def action(client: Client) -> bool:
        return await client.pause_schedule(name, by=by or default_operator())

    changed = with_client(nats_url, action)
    click.echo(f"paused {name}" if changed else f"{name} is paused already")


@schedules.command()
@click.argument("name")
@nats_option
def resume(name: str, nats_url: str | None) -> None:
    """Tick again from NAME's next tick (ticks while it was paused do not run)."""

    async def action(client: Client) -> tuple[bool, ScheduleEntry]:
        changed = await client.resume_schedule(name)
        return changed, await client.schedule(name)

    changed, entry = with_client(nats_url, action)
    if changed:
        click.echo(f"resumed {name}: next tick {_when(entry.next_tick)}")
    else:
        click.echo(f"{name} is not paused")


@schedules.command()
@click.argument("name")
@nats_option
def delete(name: str, nats_url: str | None) -> None:
    """Remove schedule NAME: no run starts for it any more (the runs it started go on)."""

    async def action(client: Client) -> None:
        await client.delete_schedule(name)

    with_client(nats_url, action)
    click.echo(f"deleted {name}")
