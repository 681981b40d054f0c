"""``jetwork definitions register|list|show``: workflow definitions by name and version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml
from rich.table import Table

from actors.definitions import load_workflow_file
from actors.definitions.mapping import definition_mapping
from events.definition_store import StoredDefinition
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.client import Client
from sdk.client.registry import parse_reference


def stored_json(stored: StoredDefinition) -> dict[str, Any]:
    return {
        "name": stored.name,
        "version": stored.version,
        "reference": stored.reference(),
        "registered_at": stored.registered_at.isoformat(),
        "digest": stored.digest,
        "definition": definition_mapping(stored.definition),
    }


@click.group()
def definitions() -> None:
    """Workflow definitions registered by name and version (run them with `jetwork run NAME`).

    \b
    Examples:
      jetwork definitions register examples/nightly.yaml
      jetwork definitions list
      jetwork definitions show nightly@1
      jetwork run nightly            # the latest version; nightly@1 for that one
    """


@definitions.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("the stored definition")
@nats_option
def register(file: Path, as_json: bool, nats_url: str | None) -> None:
    """Validate FILE and store it as NAME@VERSION: its `version:`, else the latest + 1.

    Registering what is registered already (the latest version, or the `version:` the file
    names) stores nothing and says so; other content under an existing `version:` is refused.
    """
    definition = load_workflow_file(file)

    async def action(client: Client) -> tuple[StoredDefinition, bool]:
        return await client.register_definition(definition)

    stored, created = with_client(nats_url, action)
    if as_json:
        print_json({**stored_json(stored), "created": created})
    elif created:
        click.echo(f"registered {stored.reference()}")
    else:
        click.echo(f"unchanged: {file} is {stored.reference()} already")


@definitions.command(name="list")
@json_option("the latest version of each name")
@nats_option
def list_definitions(as_json: bool, nats_url: str | None) -> None:
    """Each registered name with its latest version and how many versions it has."""

    async def action(client: Client) -> list[tuple[StoredDefinition, int]]:
        return await client.definitions()

    rows = with_client(nats_url, action)
    if as_json:
        print_json([{**stored_json(s), "versions": n} for s, n in rows])
        return
    if not rows:
        click.echo("no definitions (jetwork definitions register FILE)")
        return
    table = Table("name", "latest", "versions", "jobs", "schedule", "registered")
    for stored, count in rows:
        table.add_row(
            stored.name,
            str(stored.version),
            str(count),
            str(len(stored.definition.jobs)),
            "yes" if stored.definition.schedule else "",
            f"{stored.registered_at:%Y-%m-%d %H:%M:%S}",
        )
    make_console().print(table)


@definitions.command()
@click.argument("reference", metavar="NAME[@VERSION]")
@json_option("the stored definition")
@nats_option
def show(reference: str, as_json: bool, nats_url: str | None) -> None:
    """Print a registered definition (the latest version unless @VERSION) as YAML."""
    parse_reference(reference)

    async def action(client: Client) -> StoredDefinition:
        return await client.definition(reference)

    stored = with_client(nats_url, action)
    if as_json:
        print_json(stored_json(stored))
        return
    click.echo(f"# {stored.reference()}, registered {stored.registered_at:%Y-%m-%d %H:%M:%S}")
    mapping = definition_mapping(stored.definition)
    click.echo(yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True).rstrip())
