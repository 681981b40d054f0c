"""How the CLI draws workflows for people (rich tables); ``--json`` output bypasses all of this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from events import subjects
from events.base import RecordedEvent
from projections.reader import WorkerInfo
from projections.views import JobView, WorkflowSummary, WorkflowView
from projections.waiting import UnservedLabelSet

STATUS_STYLES = {
    "pending": "dim",
    "queued": "cyan",
    "running": "bold yellow",
    "paused": "bold blue",
    "retrying": "magenta",
    "parked": "blue",
    "succeeded": "green",
    "failed": "bold red",
    "skipped": "dim",
    "cancelled": "red",
    "waiting": "bold cyan",
}
_ENVELOPE_FIELDS = ("type", "v", "workflow_id", "job")


def styled_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def format_seconds(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4m05s``, ``2h03m``."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def elapsed(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return ""
    return format_seconds(max(0.0, ((end or now) - start).total_seconds()))


def _detail(job: JobView) -> Text:
    if job.reason and job.status in ("cancelled", "skipped"):
        return Text(job.reason[:80], style="dim" if job.status == "skipped" else "red")
    if job.waiting_for is not None and job.waiting_for.unserved:
        return Text(f"waits for a worker offering {job.waiting_for.describe()}: none is live",
                    style="yellow")  # fmt: skip
    if job.wait is not None:
        return Text(job.wait.describe(), style="cyan", overflow="fold")  # a URL: never cut
    if job.status == "parked" and job.callback_at is not None:
        return parked_detail(job)
    if job.error:
        return Text(job.error.splitlines()[0][:80] if job.error.strip() else "", style="red")
    if job.sleeping_until is not None:
        return Text(f"sleeps until {job.sleeping_until.isoformat()}", style="dim")
    if job.outputs:
        shown = ", ".join(f"{key}={value}" for key, value in job.outputs.items())
        return Text(shown if len(shown) <= 80 else shown[:77] + "...", style="dim")
    return Text("")


def parked_detail(job: JobView) -> Text:
    """``in progress (poll 2), looks again at 20:31:02: done=40``."""
    assert job.callback_at is not None
    shown = f"in progress (poll {job.poll_count}), looks again at {job.callback_at:%H:%M:%S}"
    if job.outputs:
        shown += ": " + ", ".join(f"{key}={value}" for key, value in job.outputs.items())
    return Text(shown if len(shown) <= 100 else shown[:97] + "...", style="blue")


def workflow_table(
    view: WorkflowView,
    *,
    needs: Mapping[str, Sequence[str]] | None = None,
    now: datetime | None = None,
) -> Table:
    """One row per job in DAG order: status, attempt, duration, worker, and outputs or error."""
    now = now or datetime.now(UTC)
    title = Text.assemble(
        (view.name, "bold"),
        f"  {view.workflow_id}  ",
        styled_status(view.status),
        f"  {elapsed(view.started_at, view.ended_at, now)}",
    )
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("job")
    if needs is not None:
        table.add_column("needs", style="dim")
    table.add_column("status")
    table.add_column("attempt", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("worker", style="dim")
    table.add_column("outputs / error")
    for name, job in view.jobs.items():
        row: list[RenderableType] = [name]
        if needs is not None:
            row.append(", ".join(needs.get(name, ())))
        attempt = str(job.attempts) if job.attempts else ""
        if job.iteration is not None:  # a loop: attempts count across its iterations
            attempt = f"{attempt} (iteration {job.iteration})"
        row += [
            styled_status(job.status),
            attempt,
            elapsed(job.started_at, job.ended_at, now),
            _child(job) if job.child_workflow_id else job.worker_id or "",
            _detail(job),
        ]
        table.add_row(*row)
    return table


def _child(job: JobView) -> str:
    what = f" ({job.child_workflow})" if job.child_workflow else ""
    return f"child {job.child_workflow_id}{what}"


def workflow_panel(
    view: WorkflowView, *, needs: Mapping[str, Sequence[str]] | None = None
) -> RenderableType:
    """The table, plus the reason the workflow ended and its restarts' links when there are."""
    table = workflow_table(view, needs=needs)
    lines: list[RenderableType] = []
    if view.reason:
        lines.append(Text(f"reason: {view.reason}", style=STATUS_STYLES.get(view.status, "")))
    if view.version is not None:
        lines.append(Text(f"definition: {view.name}@{view.version}", style="dim"))
    if view.restarted_from:
        lines.append(Text(f"restarted from: {view.restarted_from}", style="dim"))
    if view.restarted_as:
        lines.append(Text(f"restarted as: {view.restarted_as}", style="dim"))
    if view.vars:
        shown = ", ".join(f"{key}={_var_text(value)}" for key, value in sorted(view.vars.items()))
        lines.append(Text(f"vars: {shown}", style="dim"))
    if view.parent is not None:  # a sub-workflow
        parent = view.parent
        shown = f"parent: {parent.workflow_id} (job {parent.job}, attempt {parent.attempt})"
        lines.append(Text(shown, style="dim"))
    if view.outputs:
        lines.append(Text("outputs: " + ", ".join(f"{k}={v}" for k, v in view.outputs.items())))
    return Group(table, *lines) if lines else table


def _var_text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class LiveWorkflow:
    """A renderable that recomputes durations each time it is drawn (rich ``Live`` refreshes)."""

    def __init__(
        self, workflow_id: str, *, needs: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.workflow_id = workflow_id
        self.needs = needs
        self.view: WorkflowView | None = None

    def __rich__(self) -> RenderableType:
        if self.view is None:
            return Text(f"{self.workflow_id}: waiting for an engine to start it…", style="dim")
        return workflow_panel(self.view, needs=self.needs)


def actor_of(recorded: RecordedEvent) -> str:
    """``workflow`` or ``job <name>``, from the event's subject."""
    parsed = subjects.parse_event_subject(recorded.subject)
    return f"job {parsed.job}" if parsed is not None and parsed.job else "workflow"


def event_data(recorded: RecordedEvent) -> dict[str, Any]:
    """The event's own fields, without what its subject already says."""
    data: dict[str, Any] = recorded.event.model_dump(mode="json", by_alias=True)
    for key in _ENVELOPE_FIELDS:
        data.pop(key, None)
    return data


def event_record(recorded: RecordedEvent) -> dict[str, Any]:
    """One history entry as JSON: sequence, time, subject, actor, type and data."""
    return {
        "seq": recorded.seq,
        "time": recorded.time.isoformat(),
        "subject": recorded.subject,
        "actor": actor_of(recorded),
        "type": recorded.event.event_type,
        "data": event_data(recorded),
    }


def compact(data: Mapping[str, Any], limit: int = 160) -> str:
    text = orjson.dumps(data).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def history_table(workflow_id: str, history: Sequence[RecordedEvent]) -> Table:
    table = Table(title=f"history of {workflow_id}", title_justify="left")
    for column in ("seq", "time", "actor", "type", "data"):
        table.add_column(column, justify="right" if column == "seq" else "left")
    for recorded in history:
        data = event_data(recorded)
        data.pop("definition", None)  # shown by `jetwork history --json`; too long for a cell
        table.add_row(
            str(recorded.seq),
            recorded.time.astimezone().strftime("%H:%M:%S.%f")[:-3],
            actor_of(recorded),
            recorded.event.event_type,
            Text(compact(data), style="dim"),
        )
    return table


def event_sequence(types: Sequence[str], *, limit: int = 12) -> str:
    """Event types in log order, runs of one type folded (``JobQueued x3``).

    Past ``limit`` items the middle is elided, so the first and the last events stay visible.
    """
    runs: list[list[Any]] = []
    for kind in types:
        if runs and runs[-1][0] == kind:
            runs[-1][1] += 1
        else:
            runs.append([kind, 1])
    items = [kind if count == 1 else f"{kind} x{count}" for kind, count in runs]
    if len(items) > limit:
        head, tail = items[: limit // 2], items[-(limit - limit // 2 - 1) :]
        items = [*head, "…", *tail]
    return ", ".join(items)


def event_line(recorded: RecordedEvent) -> str:
    """One line per event for ``jetwork watch``."""
    data = event_data(recorded)
    data.pop("definition", None)
    when = recorded.time.astimezone().strftime("%H:%M:%S.%f")[:-3]
    what = f"{actor_of(recorded)}: {recorded.event.event_type}"
    wf = subjects.workflow_of(recorded.subject)
    return f"{when} {recorded.seq:>7} {wf} {what} {compact(data, 200)}"


def summary_table(rows: Sequence[WorkflowSummary]) -> Table:
    """``jetwork list``: one row per workflow, newest first, with its job counts."""
    now = datetime.now(UTC)
    table = Table(title_justify="left")
    for column in ("workflow", "name", "status", "started", "duration", "jobs"):
        table.add_column(column, no_wrap=column != "jobs")
    for row in rows:
        counts = ", ".join(f"{n} {status}" for status, n in row.job_counts.items() if n)
        unserved = [need.describe() for need in row.waiting_for if need.unserved]
        if unserved:
            counts += f" (no live worker offers {'; '.join(unserved)})"
        started = (
            row.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if row.started_at else ""
        )
        if row.parent_workflow_id:
            counts += f" (sub-workflow of {row.parent_workflow_id})"
        if row.status == "queued" and row.group:
            counts += f" (waiting for concurrency group {row.group})"
        table.add_row(
            row.workflow_id,
            row.name,
            styled_status(row.status),
            started,
            elapsed(row.started_at, row.ended_at, now),
            counts,
        )
    return table


def _local(when: datetime | None) -> str:
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else ""


def unserved_table(unserved: Sequence[UnservedLabelSet]) -> Table:
    """``jetwork workers``: label sets with work waiting that no live worker serves."""
    table = Table(title="waiting for a worker: no live worker serves these", title_justify="left")
    for column in ("needs", "dispatches waiting", "subject"):
        table.add_column(column, justify="right" if column == "dispatches waiting" else "left")
    for labelset in unserved:
        table.add_row(
            Text(labelset.describe(), style="yellow"),
            str(labelset.waiting),
            Text(f"job.{labelset.token}", style="dim"),
        )
    return table


def workers_table(workers: Sequence[WorkerInfo]) -> Table:
    """``jetwork workers``: one row per live worker."""
    now = datetime.now(UTC)
    table = Table(title_justify="left")
    for column in ("worker", "labels", "handlers", "running", "last seen", "host"):
        table.add_column(column)
    if any(worker.paused for worker in workers):
        table.add_column("paused")
    for worker in workers:
        paused = [", ".join(worker.paused) or "-"] if any(w.paused for w in workers) else []
        running = ", ".join(f"{job.workflow_id}/{job.job}#{job.attempt}" for job in worker.running)
        seen = f"{elapsed(worker.last_seen, None, now)} ago" if worker.last_seen else "never"
        table.add_row(
            worker.worker_id,
            ", ".join(worker.labels),
            ", ".join(worker.handlers),
            f"{len(worker.running)}/{worker.concurrency}" + (f": {running}" if running else ""),
            Text(seen + (" (stale)" if worker.stale else ""), style="red" if worker.stale else ""),
            f"{worker.host}:{worker.pid}" if worker.host else "",
            *paused,
        )
    return table
