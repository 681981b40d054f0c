"""``jetwork dead-letters``: input jetwork could not process, for operators."""

from __future__ import annotations

import click
from rich.table import Table

from events.dead_letters import DeadLetter
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.client import Client


@click.command(name="dead-letters")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="At most this many, the newest.",
)
@json_option("the dead letters")
@nats_option
def dead_letters(limit: int, as_json: bool, nats_url: str | None) -> None:
    """Show the newest dead letters: commands or events that could not be processed, and why.

    \b
    Examples:
      jetwork dead-letters
      jetwork dead-letters --limit 100 --json
    """

    async def action(client: Client) -> list[DeadLetter]:
        return await client.dead_letters(limit=limit)

    letters = with_client(nats_url, action)
    if as_json:
        print_json([letter.model_dump(mode="json") for letter in letters])
        return
    if not letters:
        click.echo("no dead letters")
        return
    table = Table(title_justify="left")
    for column in ("at", "source", "subject", "seq"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason")
    for letter in letters:
        table.add_row(
            letter.at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            letter.source,
            letter.subject,
            "" if letter.seq is None else str(letter.seq),
            letter.reason,
        )
    make_console().print(table)
