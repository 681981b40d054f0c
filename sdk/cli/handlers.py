"""``jetwork handlers [--schema] [--json]``: the Python handlers live workers offer (``uses:``),
from their presence entries in KV ``jw_workers``, with their input and output models as JSON
Schema (``--schema``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
import orjson
from rich.table import Table
from rich.text import Text

from projections.reader import WorkerInfo
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.client import Client
from sdk.client.workers import WorkerList


def collect(workers: Iterable[WorkerInfo]) -> dict[str, dict[str, Any]]:
    """Handler -> ``{"workers": [ids], "input": …, "output": …, "takes_inputs": …}``, sorted by
    name. Workers running different versions of a handler may publish different schemas: the
    first worker's (by id) is shown, and ``schemas_differ`` says so."""
    found: dict[str, dict[str, Any]] = {}
    for worker in sorted(workers, key=lambda w: w.worker_id):
        for name in worker.handlers:
            schema = worker.handler_schemas.get(name, {"input": None, "output": None})
            entry = found.setdefault(name, {"workers": [], **schema, "schemas_differ": False})
            entry["workers"].append(worker.worker_id)
            if any(entry.get(key) != schema.get(key) for key in ("input", "output")):
                entry["schemas_differ"] = True
    return dict(sorted(found.items()))


@click.command()
@click.option("--schema", is_flag=True, help="Show each handler's input and output JSON Schema.")
@json_option("the handlers, with their schemas")
@nats_option
def handlers(schema: bool, as_json: bool, nats_url: str | None) -> None:
    """List the Python handlers live workers offer (what `uses:` can name).

    Each with the workers offering it; with --schema, the JSON Schema of its pydantic input
    model (what `with:` must hold) and output model, as the workers publish them. --json always
    includes the schemas.

    \b
    Examples:
      jetwork handlers
      jetwork handlers --schema
      jetwork handlers --json | jq '.resize.input'
    """

    async def action(client: Client) -> WorkerList:
        return await client.workers()

    found = collect(with_client(nats_url, action))
    if as_json:
        print_json(found)
        return
    console = make_console()
    if not found:
        console.print("no live worker offers a handler")
        return
    if not schema:
        table = Table(box=None, pad_edge=False)
        for column in ("handler", "workers", "takes"):
            table.add_column(column)
        for name, entry in found.items():
            table.add_row(Text(name), Text(", ".join(entry["workers"])), Text(_takes(entry)))
        console.print(table)
        return
    for name, entry in found.items():
        console.print(Text(f"{name}  ({', '.join(entry['workers'])})", style="bold"))
        if entry["schemas_differ"]:
            console.print(Text("  workers publish different schemas: the first is shown"))
        for key in ("input", "output"):
            shown = orjson.dumps(entry.get(key), option=orjson.OPT_INDENT_2).decode()
            console.print(Text(f"  {key}: " + shown.replace("\n", "\n  ")))


def _takes(entry: dict[str, Any]) -> str:
    if entry.get("takes_inputs") is False:
        return "no inputs"
    model = entry.get("input")
    if not model:
        return "any mapping"
    return str(model.get("title", "a model"))
