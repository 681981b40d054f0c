"""``jetwork set ID KEY=VALUE…``: workflow variables, read as ``${{ vars.KEY }}`` by jobs not yet
queued (Conductor's update variables).

A value is text, as typed; ``--json`` values (``--value-json``) are read as JSON so that a number,
a list or an object can be set. Refused with ``error: …`` and exit 1 on an ended workflow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
import orjson

from sdk.cli.control import _operator_options, _run, parse_pairs
from sdk.client import Client
from sdk.client.control import ControlResult
from sdk.errors import InvalidArgument


@click.command(name="set")
@click.argument("workflow_id", metavar="ID")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option(
    "--json-values",
    is_flag=True,
    help='Read each VALUE as JSON (3, true, [1,2], {"a": 1}); text otherwise.',
)
@_operator_options
def set_vars(
    workflow_id: str,
    pairs: tuple[str, ...],
    json_values: bool,
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Set workflow variables: jobs not yet queued read `${{ vars.KEY }}` with the new values.

    Jobs queued or running already keep what they were rendered with. KEY may be one the
    workflow's `vars:` declares or a new one. Refused for a workflow that has ended. `status`
    shows the current variables, `history` who set what and when.

    \b
    Examples:
      jetwork set wf-3f2a9c0d1e4b5a6c7d8e region=eu-west-1 --reason "failover"
      jetwork set "$id" batch=500 --json-values
    """
    values = parse_vars(pairs, as_json=json_values)

    async def action(client: Client) -> ControlResult:
        return await client.set_vars(
            workflow_id, values, reason=reason, by=by, answer_timeout=timeout
        )

    result = _run(nats_url, action)
    if as_json:
        click.echo(orjson.dumps(result.to_json_dict() | {"values": values}).decode())
    elif not result.applied:
        click.echo(
            f"set of {workflow_id} is stored; no engine answered yet: it is applied when one "
            "runs (`jetwork status` shows it)",
            err=True,
        )
    elif not result.changed:
        click.echo(f"{workflow_id} has these values already", err=True)
    else:
        click.echo(f"set {', '.join(values)} of {workflow_id}", err=True)


def parse_vars(pairs: Iterable[str], *, as_json: bool = False) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values as text, or as JSON with ``as_json``."""
    texts = parse_pairs(pairs, example="region=eu-west-1")
    if not as_json:
        return dict(texts)
    values: dict[str, Any] = {}
    for key, text in texts.items():
        try:
            values[key] = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise InvalidArgument(f"{key}: {text!r} is not JSON ({error})") from None
    return values
