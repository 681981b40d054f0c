"""``jetwork run FILE --dry-run [--mock JOB='{"out": "v"}']… [--fail JOB]…``: decide the whole
workflow in this process (``sdk.dry_run``), with no server and no workers, and print which jobs
would run, be skipped or fail, and why, and the final status. Exit 0 when the workflow would
succeed, 1 otherwise (as ``run --wait``). A fan-out's instances are printed below their job, a
child run's jobs below its ``workflow:`` job, and what the dry run could not decide as the
engine would (a registered child) on ``note:`` lines."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click
import orjson
from rich.table import Table
from rich.text import Text

from events.definition import WorkflowDefinition
from sdk.cli._common import make_console, print_json
from sdk.cli._render import STATUS_STYLES
from sdk.errors import InvalidArgument
from sdk.simulation import DryRun, DryRunJob, dry_run

F = TypeVar("F", bound=Callable[..., Any])


def dry_run_options(function: F) -> F:
    """``--dry-run``, ``--mock`` and ``--fail`` for ``jetwork run``."""
    function = click.option(
        "--fail",
        "failures",
        multiple=True,
        metavar="JOB",
        help="With --dry-run: every attempt of JOB fails (repeatable); JOB-INDEX: one instance "
        "of a fanned-out job.",
    )(function)
    function = click.option(
        "--mock",
        "mocks",
        multiple=True,
        metavar="JOB=JSON",
        help='With --dry-run: JOB succeeds with these outputs, e.g. build=\'{"artifact": "a"}\' '
        "(every instance of a fanned-out JOB, or JOB-INDEX: one; a workflow: job's whole child).",
    )(function)
    decorated: F = click.option(
        "--dry-run",
        is_flag=True,
        help="Decide the whole run here, with no server and no workers; print what would happen.",
    )(function)
    return decorated


def parse_mocks(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``JOB={"key": "value"}`` pairs."""
    mocks: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        job, sep, text = pair.partition("=")
        job = job.strip()
        if not sep or not job:
            raise InvalidArgument(f"--mock {pair!r}: expected JOB=JSON, e.g. --mock build='{{}}'")
        try:
            outputs = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise InvalidArgument(f"--mock {job}: {text!r} is not JSON ({error})") from None
        if not isinstance(outputs, dict):
            raise InvalidArgument(f"--mock {job}: expected a JSON object of outputs, got {text!r}")
        if job in mocks:
            raise InvalidArgument(f"--mock {job!r} is given twice")
        mocks[job] = outputs
    return mocks


def run_dry(
    definition: WorkflowDefinition,
    *,
    inputs: dict[str, Any],
    mocks: Iterable[str],
    failures: Iterable[str],
    as_json: bool,
) -> None:
    """Play the run and print it; exits 0 when it would succeed, 1 otherwise."""
    result = dry_run(definition, inputs=inputs, mocks=parse_mocks(mocks), failures=failures)
    if as_json:
        print_json(result.to_json_dict())
    else:
        console = make_console()
        console.print(Text(f"dry run of {result.workflow} (no server, no workers)"))
        console.print(_table(result))
        for note in result.notes:
            console.print(Text(f"note: {note}"))
        ending = Text("would end: ")
        ending.append(result.status, style=STATUS_STYLES.get(result.status, ""))
        ending.append(f" ({result.reason})" if result.reason else "")
        console.print(ending)
    sys.exit(0 if result.succeeded else 1)


def _table(result: DryRun) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("job", "would be", "attempts", "what / why"):
        table.add_column(column)
    for depth, job in _rows(result, 0):
        status = Text(job.status, style=STATUS_STYLES.get(job.status, ""))
        name = "  " * depth + job.name
        table.add_row(Text(name), status, str(job.attempts or ""), Text(_detail(job)))
    return table


def _rows(result: DryRun, depth: int) -> Iterator[tuple[int, DryRunJob]]:
    """Each job, its instances indented below it, a child run's jobs below its job."""
    for job in result.jobs.values():
        yield (depth + (job.instance_of is not None), job)
        if job.child is not None:
            yield from _rows(job.child, depth + 1 + (job.instance_of is not None))


def _detail(job: DryRunJob) -> str:
    if job.status in ("skipped", "cancelled", "unsupported", "pending", "failed"):
        return job.reason or ""
    if job.instances is not None:
        what = f"fan-out: {job.instances} instance{'s' if job.instances != 1 else ''}"
    elif job.workflow is not None:
        what = f"workflow: {job.workflow}"
        if job.child is not None:
            what += f" (its run below: {job.child.status})"
        elif job.reason:  # a registered definition, not read here
            what += f" ({job.reason})"
    elif job.waits_for is not None:
        what = f"waits for {job.waits_for}"
    elif job.run is not None:
        what = f"run: {job.run}"
    else:  # (a set:, sleep: or until: step has neither: jetwork decides it)
        what = f"uses: {job.uses}" if job.uses is not None else "no worker: decided by jetwork"
    if job.outputs:
        shown = ", ".join(f"{key}={value}" for key, value in job.outputs.items())
        what += f"  → outputs {shown}" + (" (mocked)" if job.mocked else "")
    return what
