"""``jetwork pause|resume|skip|retry|rerun|restart``: an operator's control of a run.

Each sends a command to the engine owning the workflow and waits (``--timeout``) for its answer;
what makes no sense (pausing an ended workflow, skipping a succeeded job, retrying a running
workflow, an unknown job) is refused with ``error: …`` and exit 1. ``history`` shows who did what
and when (``--by``, default ``user@host``, and ``--reason``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import click

from sdk.cli._common import json_option, nats_option, print_json, with_client
from sdk.client import Client
from sdk.client.control import DEFAULT_ANSWER_TIMEOUT, ControlResult
from sdk.errors import InvalidArgument

F = TypeVar("F", bound=Callable[..., Any])

_DONE = {
    "pause": "paused",
    "resume": "resumed",
    "skip": "skipped",
    "retry": "retried",
    "rerun": "reran",
    "restart": "restarted",
}
_HELD = {
    "pause": "{wf} is paused already",
    "resume": "{wf} runs already",
    "skip": "{job} of {wf} is skipped already",
    "retry": "{wf} runs again already",
    "rerun": "{wf} runs again from {job} already",
    "restart": "{wf} is restarted already",
}


def _operator_options(function: F) -> F:
    function = click.option("--reason", default=None, help="Why, for the log (`history`).")(
        function
    )
    function = click.option(
        "--by", default=None, metavar="NAME", help="Who does it, for the log (default user@host)."
    )(function)
    function = click.option(
        "--timeout",
        type=float,
        default=DEFAULT_ANSWER_TIMEOUT,
        show_default=True,
        metavar="S",
        help="Seconds to wait for the engine's answer (0: do not wait).",
    )(function)
    decorated: F = json_option("the outcome")(nats_option(function))
    return decorated


def _report(result: ControlResult, *, as_json: bool, job: str | None = None) -> None:
    if as_json:
        print_json(result.to_json_dict() | ({"job": job} if job else {}))
        return
    wf, what = result.workflow_id, result.command
    if not result.applied:
        click.echo(
            f"{what} of {wf} is stored; no engine answered yet: it is applied when one runs "
            "(`jetwork status` shows it)",
            err=True,
        )
    elif not result.changed:
        click.echo(_HELD[what].format(wf=wf, job=job), err=True)
    elif what == "rerun":
        click.echo(f"reran {wf} from {job}", err=True)
    elif what == "restart":
        click.echo(f"restarted {wf} as {result.restarted_as}", err=True)
    else:
        click.echo(f"{_DONE[what]} {job + ' of ' if job else ''}{wf}", err=True)


def _run(nats_url: str | None, action: Callable[[Client], Awaitable[ControlResult]]) -> Any:
    return with_client(nats_url, action)


@click.command()
@click.argument("workflow_id", metavar="ID")
@_operator_options
def pause(
    workflow_id: str,
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Pause a running workflow: no new job is queued until `jetwork resume`.

    Running jobs finish and their results are recorded; a retry or the workflow's timeout that
    falls due meanwhile waits for the resume. `status` says `paused`. Refused for a workflow
    that has ended or is being cancelled.

    \b
    Examples:
      jetwork pause wf-3f2a9c0d1e4b5a6c7d8e --reason "deploy freeze"
      jetwork pause "$id" --json
    """

    async def action(client: Client) -> ControlResult:
        return await client.pause(workflow_id, reason=reason, by=by, answer_timeout=timeout)

    _report(_run(nats_url, action), as_json=as_json)


@click.command()
@click.argument("workflow_id", metavar="ID")
@_operator_options
def resume(
    workflow_id: str,
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Resume a paused workflow exactly where it stopped.

    Jobs that became ready are queued, retries that fell due are queued, and a timeout that
    passed ends the workflow. Refused for a workflow that is not paused.

    \b
    Examples:
      jetwork resume wf-3f2a9c0d1e4b5a6c7d8e
    """

    async def action(client: Client) -> ControlResult:
        return await client.resume(workflow_id, reason=reason, by=by, answer_timeout=timeout)

    _report(_run(nats_url, action), as_json=as_json)


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("job", metavar="JOB")
@click.option(
    "--output",
    "-o",
    "outputs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An output the job's dependents read (`needs.JOB.outputs.KEY`); repeatable.",
)
@_operator_options
def skip(
    workflow_id: str,
    job: str,
    outputs: tuple[str, ...],
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Skip a job by hand: its dependents proceed as if it had succeeded with these outputs.

    The job must be pending, queued, waiting for a retry, or failed, in a workflow that has
    not ended (pause it first to skip a failed job before its dependents are judged). Refused
    for a running, succeeded or cancelled job and an unknown job name.

    JOB may be one instance `<job>-<index>` of a fanned-out job (matrix, for_each) while its
    fan-out runs: its slot in the gathered outputs gets these outputs (null without), and the
    fanned-out job counts it as succeeded.

    \b
    Examples:
      jetwork skip "$id" flaky --output value=7 --reason "known outage"
      jetwork skip "$id" test-3 -o report=none --reason "that platform is down"
      jetwork pause "$id"; jetwork skip "$id" build -o artifact=app.tgz; jetwork resume "$id"
    """
    given = parse_outputs(outputs)

    async def action(client: Client) -> ControlResult:
        return await client.skip(
            workflow_id, job, outputs=given, reason=reason, by=by, answer_timeout=timeout
        )

    _report(_run(nats_url, action), as_json=as_json, job=job)


@click.command()
@click.argument("workflow_id", metavar="ID")
@_operator_options
def retry(
    workflow_id: str,
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Run a failed or cancelled workflow again, as the same workflow.

    Its failed and cancelled jobs, and the jobs skipped because of them, run again as new
    attempts; succeeded jobs keep their outputs. The workflow goes back to `running` (its
    timeout counts from now). Refused for a workflow that runs, is paused or succeeded.

    \b
    Examples:
      jetwork retry wf-3f2a9c0d1e4b5a6c7d8e --reason "credentials fixed"
      jetwork retry "$id" && jetwork status "$id"
    """

    async def action(client: Client) -> ControlResult:
        return await client.retry(workflow_id, reason=reason, by=by, answer_timeout=timeout)

    _report(_run(nats_url, action), as_json=as_json)


@click.command()
@click.argument("workflow_id", metavar="ID")
@click.option(
    "--from",
    "from_job",
    required=True,
    metavar="JOB",
    help="The job to run again, with everything downstream of it.",
)
@_operator_options
def rerun(
    workflow_id: str,
    from_job: str,
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Run an ended workflow again from a job, as the same workflow.

    JOB and every job downstream of it (through `needs` and `needs_any`, transitively) run
    again as new attempts, and read the new outputs; the other jobs keep theirs. The workflow
    goes back to `running` (its timeout counts from now). Allowed on a succeeded, failed or
    cancelled workflow; refused while it runs or is paused, and for an unknown job.

    \b
    Examples:
      jetwork rerun wf-3f2a9c0d1e4b5a6c7d8e --from build --reason "new base image"
      jetwork rerun "$id" --from test --json
    """

    async def action(client: Client) -> ControlResult:
        return await client.rerun(
            workflow_id, from_job=from_job, reason=reason, by=by, answer_timeout=timeout
        )

    _report(_run(nats_url, action), as_json=as_json, job=from_job)


@click.command()
@click.argument("workflow_id", metavar="ID")
@_operator_options
def restart(
    workflow_id: str,
    reason: str | None,
    by: str | None,
    timeout: float,
    as_json: bool,
    nats_url: str | None,
) -> None:
    """Run an ended workflow again as a new run: same definition, same inputs.

    Prints the new run's id on stdout (as `run` does). `status` links the two: the new run's
    `restarted from`, the old one's `restarted as`. Allowed on a succeeded, failed or cancelled
    workflow; refused while it runs or is paused.

    \b
    Examples:
      new=$(jetwork restart wf-3f2a9c0d1e4b5a6c7d8e) && jetwork status "$new"
      jetwork restart "$id" --reason "nightly again" --json
    """

    async def action(client: Client) -> ControlResult:
        return await client.restart(workflow_id, reason=reason, by=by, answer_timeout=timeout)

    result = _run(nats_url, action)
    _report(result, as_json=as_json)
    if not as_json and result.restarted_as is not None:
        click.echo(result.restarted_as)


def parse_outputs(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs, values as text (outputs are text, as ``::set-output``'s)."""
    return parse_pairs(pairs, flag="--output ", example="--output v=1")


def parse_pairs(pairs: Iterable[str], *, flag: str = "", example: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs as text, each key once; ``flag`` names the option in messages."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgument(f"{flag}{pair!r}: expected KEY=VALUE, e.g. {example}")
        if key in found:
            raise InvalidArgument(f"{flag}{key!r} is given twice")
        found[key] = value
    return found
