"""``jetwork run FILE``: validate a workflow file, start it, and optionally watch it to the end."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.live import Live

from actors.definitions import load_workflow_file
from actors.definitions.input_schema import coerce
from events.definition import WorkflowDefinition
from events.definition_store import parse_reference
from events.requests import TRACEPARENT_PATTERN
from projections.views import WorkflowView
from projections.waiting import describe_waiting
from sdk.cli._common import json_option, make_console, nats_option, print_json, with_client
from sdk.cli._render import LiveWorkflow, workflow_panel
from sdk.cli.dry_run import dry_run_options, run_dry
from sdk.client import Client
from sdk.client.registry import resolve_source
from sdk.errors import InvalidArgument, WaitTimeout


def parse_inputs(
    pairs: Iterable[str], definition: WorkflowDefinition | None = None
) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that reads as JSON (``3``, ``true``, ``[1,2]``) is that value.

    Anything else is text: ``--input version=0.1.0`` is the string ``"0.1.0"``. Quote JSON
    strings to keep them text: ``--input n='"3"'``. An input of ``definition`` that declares a
    type is read as that type instead (``-i version=1.0`` is the text ``"1.0"`` for a string).
    """
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgument(f"--input {pair!r}: expected KEY=VALUE, e.g. --input who=world")
        if key in inputs:
            raise InvalidArgument(f"--input {key!r} is given twice")
        declared = definition.inputs.get(key) if definition is not None else None
        inputs[key] = coerce(raw, declared.json_schema) if declared is not None else _value(raw)
    return inputs


def _value(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw


def needs_of(definition: WorkflowDefinition) -> dict[str, tuple[str, ...]]:
    return {name: job.upstream for name, job in definition.jobs.items()}


async def watch_live(
    client: Client,
    workflow_id: str,
    *,
    console: Console,
    needs: dict[str, tuple[str, ...]] | None = None,
) -> WorkflowView:
    """Draw the workflow's DAG live until it ends; return the final view."""
    live_view = LiveWorkflow(workflow_id, needs=needs)
    final: WorkflowView | None = None
    with Live(live_view, console=console, refresh_per_second=8, transient=False):
        async for view in client.follow(workflow_id):
            live_view.view = final = view
    if not console.is_terminal:
        console.line()  # rich ends the final frame without a newline when not on a terminal
    assert final is not None  # follow() ends only after yielding a final view
    return final


def _check_traceparent(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> str | None:
    """A malformed ``--traceparent`` is a usage error before anything connects."""
    if value is not None and not re.match(TRACEPARENT_PATTERN, value):
        raise click.BadParameter(
            f"{value!r} is not a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<flags>"
        )
    return value


@click.command()
@click.argument(
    "file", metavar="FILE|NAME[@VERSION]", type=click.Path(dir_okay=False, path_type=Path)
)
@click.option(
    "--input",
    "-i",
    "inputs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A workflow input (repeatable). JSON values (3, true, [1]) are typed, others are text.",
)
@click.option("--wait", "-w", is_flag=True, help="Watch the run live until it ends.")
@json_option("the final status (with --wait) or the workflow id")
@click.option("--idempotency-key", metavar="KEY", help="Start at most once per key.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --wait: give up waiting after this long (exit 1; the run goes on).",
)
@click.option(
    "--traceparent",
    envvar="TRACEPARENT",
    metavar="00-TRACE-SPAN-FLAGS",
    help="Join this W3C trace: the run's spans become part of it (docs/metrics.md). "
    "[env: TRACEPARENT]",
    callback=_check_traceparent,
)
@click.option(
    "--priority",
    type=click.IntRange(1, 10),
    metavar="1..10",
    help="This run's priority: its jobs are dispatched before lower ones when workers are "
    "scarce (replaces the workflow's priority; jobs with their own keep it).",
)
@nats_option
@dry_run_options
def run(
    file: Path,
    inputs: tuple[str, ...],
    wait: bool,
    as_json: bool,
    idempotency_key: str | None,
    timeout: float | None,
    traceparent: str | None,
    nats_url: str | None,
    priority: int | None = None,
    dry_run: bool = False,
    mocks: tuple[str, ...] = (),
    failures: tuple[str, ...] = (),
) -> None:
    """Start the workflow in FILE, or a registered one by NAME (its latest version) or
    NAME@VERSION; print its id, or watch it with --wait.

    The file and the inputs are validated before anything is sent: every problem is listed
    with its line. With --wait the exit code is 0 when the workflow succeeded, 1 otherwise.
    An existing file wins over a registered name (`jetwork definitions register`).

    \b
    Examples:
      jetwork run examples/hello.yaml --input who=you
      id=$(jetwork run examples/diamond.yaml) && jetwork status "$id"
      jetwork run examples/diamond.yaml --wait
      jetwork run examples/release.yaml -i version=1.2.0 --wait --json
      jetwork run examples/diamond.yaml --dry-run --mock left='{"value": "7"}' --fail flaky
      jetwork run nightly@2 --wait
      jetwork run examples/diamond.yaml --priority 9
    """
    named = not file.exists() and parse_reference(str(file)) is not None
    if named and dry_run:
        raise InvalidArgument(
            f"--dry-run reads a file, not a registered name: `jetwork definitions show {file}` "
            "prints it"
        )
    definition = None if named else load_workflow_file(file)
    given = parse_inputs(inputs, definition)
    if dry_run and definition is not None:
        run_dry(definition, inputs=given, mocks=mocks, failures=failures, as_json=as_json)
    elif mocks or failures:
        raise InvalidArgument("--mock and --fail go with --dry-run")

    async def action(client: Client) -> WorkflowView | None:
        nonlocal definition, given
        if definition is None:
            found = await resolve_source(client, str(file))
            assert isinstance(found, WorkflowDefinition)
            definition = found
            given = parse_inputs(inputs, definition)  # typed as its inputs declare
        handle = await client.start(
            definition,
            inputs=given,
            idempotency_key=idempotency_key,
            traceparent=traceparent,
            priority=priority,
        )
        if not wait:
            if as_json:
                print_json({"workflow_id": handle.workflow_id})
            else:
                click.echo(handle.workflow_id)
            return None
        if as_json:
            return await handle.wait(timeout=timeout)
        console = make_console()
        version = f"@{definition.version}" if definition.version is not None else ""
        console.print(f"started [bold]{handle.workflow_id}[/] ({definition.name}{version})")
        return await _watch(client, handle.workflow_id, console, definition, timeout)

    final = with_client(nats_url, action)
    if final is None:
        return
    if as_json:
        print_json(final.to_json_dict())
    sys.exit(0 if final.status == "succeeded" else 1)


async def _watch(
    client: Client,
    workflow_id: str,
    console: Console,
    definition: WorkflowDefinition,
    timeout: float | None,
) -> WorkflowView:
    try:
        async with asyncio.timeout(timeout):
            return await watch_live(
                client, workflow_id, console=console, needs=needs_of(definition)
            )
    except TimeoutError:
        current = await client.status(workflow_id)
        console.print(workflow_panel(current, needs=needs_of(definition)))
        raise WaitTimeout(
            workflow_id, timeout or 0.0, status=current.status, waiting=describe_waiting(current)
        ) from None
