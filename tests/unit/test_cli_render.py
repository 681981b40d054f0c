"""How the CLI draws views and events for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from events import subjects
from events.base import RecordedEvent
from events.catalog import JobSucceeded
from events.subjects import partition_of
from projections.views import JobView, WorkflowView
from sdk.cli._render import (
    LiveWorkflow,
    actor_of,
    event_line,
    event_record,
    event_sequence,
    format_seconds,
    workflow_panel,
)
from sdk.cli.watch import watched

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
S3 = timedelta(seconds=3)


def rendered(renderable: object) -> str:
    console = Console(width=140, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0.00s"), (0.4213, "0.42s"), (12.34, "12.3s"), (245, "4m05s"), (7380, "2h03m")],
)
def test_durations_read_naturally(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def view() -> WorkflowView:
    return WorkflowView(
        workflow_id="wf-1",
        name="release",
        status="failed",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=3),
        reason="job test failed",
        jobs={
            "build": JobView(status="succeeded", attempts=2, outputs={"artifact": "a.tgz"},
                             worker_id="w-1", started_at=T0, ended_at=T0 + timedelta(seconds=1)),
            "test": JobView(status="failed", attempts=1, error="exit code 3\nmore",
                            started_at=T0 + timedelta(seconds=1), ended_at=T0 + S3),
            "deploy": JobView(status="skipped", attempts=0),
        },
    )  # fmt: skip


def test_a_workflow_is_a_table_of_jobs_in_dag_order() -> None:
    text = rendered(workflow_panel(view(), needs={"test": ("build",), "deploy": ("test",)}))
    assert "release  wf-1  failed  3.00s" in text
    lines = [line for line in text.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in lines] == ["build", "test", "deploy"]
    assert "artifact=a.tgz" in lines[0] and "2" in lines[0] and "1.00s" in lines[0]
    assert "exit code 3" in lines[1] and "more" not in lines[1]
    assert "reason: job test failed" in text


def test_the_live_view_waits_for_the_start_then_draws() -> None:
    live = LiveWorkflow("wf-1")
    assert "waiting for an engine" in rendered(live)
    live.view = view()
    assert "release" in rendered(live)


def test_events_as_lines_and_records() -> None:
    recorded = RecordedEvent(
        seq=7,
        subject=subjects.job_event("wf-1", "build", "JobSucceeded"),
        time=T0,
        event=JobSucceeded(workflow_id="wf-1", job="build", attempt=1, epoch=1,
                           outputs={"k": "v"}, ended_at=T0),
    )  # fmt: skip
    assert actor_of(recorded) == "job build"
    line = event_line(recorded)
    assert "      7 wf-1 job build: JobSucceeded" in line
    assert '"outputs":{"k":"v"}' in line
    record = event_record(recorded)
    assert record["actor"] == "job build"
    assert record["type"] == "JobSucceeded"
    assert "workflow_id" not in record["data"] and record["data"]["attempt"] == 1


def test_the_demo_lists_event_types_in_log_order_with_runs_folded() -> None:
    types = ["WorkflowStarted", "JobQueued", "JobStarted", "JobSucceeded", "WorkflowSucceeded"]
    assert event_sequence(types) == ", ".join(types)  # not alphabetical: the order they happened
    folded = ["WorkflowStarted", "JobQueued", "JobQueued", "JobQueued", "JobStarted"]
    assert event_sequence(folded) == "WorkflowStarted, JobQueued x3, JobStarted"


def test_a_long_event_sequence_keeps_its_first_and_last_events() -> None:
    types = ["WorkflowStarted"] + [f"Type{i}" for i in range(20)] + ["WorkflowSucceeded"]
    shown = event_sequence(types, limit=6).split(", ")
    assert shown == ["WorkflowStarted", "Type0", "Type1", "…", "Type19", "WorkflowSucceeded"]


def test_watch_says_what_it_waits_for() -> None:
    assert watched(None, None, None) == "events of any workflow (evt.>)"
    assert watched("wf-1", "build", "JobFailed") == (
        f"JobFailed events of job build of workflow wf-1 (evt.{partition_of('wf-1')}"
        ".wf-1.job.build.JobFailed)"
    )
