"""``jetwork signal ID NAME [--data JSON] [--id SIGNAL_ID]``: resume a job that waits for a signal.

The job of workflow ID with ``wait_for: {signal: NAME}`` succeeds with the data (a JSON object)
as its outputs; sent before the wait starts, the signal is kept until then. Refused (``error:
…``, exit 1) for an ended or unknown workflow, or a signal name no job of it waits for.
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from sdk.cli._common import json_option, nats_option, print_json, with_client
from sdk.client import Client
from sdk.client.control import DEFAULT_ANSWER_TIMEOUT, ControlResult
from sdk.errors import InvalidArgument


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("name", metavar="NAME")
@click.option(
    "--data",
    default=None,
    metavar="JSON",
    help="A JSON object: the waiting job's outputs (`needs.JOB.outputs.KEY`).",
)
@click.option(
    "--id",
    "signal_id",
    default=None,
    metavar="SIGNAL_ID",
    help="The signal's id: sending the same id again records nothing (default: a new one).",
)
@click.option(
    "--by", default=None, metavar="NAME", help="Who sends it, for the log (default user@host)."
)
@click.option(
    "--timeout",
    type=float,
    default=DEFAULT_ANSWER_TIMEOUT,
    show_default=True,
    metavar="S",
    help="Seconds to wait for the engine's answer (0: do not wait).",
)
@json_option("the outcome")
@nats_option
def signal(
    workflow_id: str,
    name: str,
    data: str | None,
    signal_id: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Send signal NAME to workflow ID: the job waiting for it succeeds with --data as outputs.

    A signal sent before its job starts waiting is kept and taken when the wait starts. `history`
    records it (`SignalReceived`, then `SignalConsumed` by the job).

    \b
    Examples:
      jetwork signal "$id" approve --data '{"by": "ann", "ticket": "OPS-12"}'
      jetwork signal "$id" approve --id approval-OPS-12   # a retry of it changes nothing
    """
    given = parse_data(data)

    async def action(client: Client) -> ControlResult:
        return await client.signal(
            workflow_id, name, given, signal_id, by=by, answer_timeout=timeout
        )

    result: ControlResult = with_client(nats_url, action)
    if as_json:
        print_json(result.to_json_dict() | {"signal": name})
    elif not result.applied:
        click.echo(
            f"signal {name} to {workflow_id} is stored; no engine answered yet: it is recorded "
            "when one runs (`jetwork history` shows it)",
            err=True,
        )
    elif not result.changed:
        click.echo(f"signal {name} to {workflow_id} was recorded already (same id)", err=True)
    else:
        click.echo(f"sent signal {name} to {workflow_id}", err=True)


def parse_data(text: str | None) -> dict[str, Any]:
    """``--data``: a JSON object, or nothing (``{}``)."""
    if text is None:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"--data is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidArgument(
            f'--data must be a JSON object such as \'{{"by": "ann"}}\', got {text[:60]!r}'
        )
    return value
