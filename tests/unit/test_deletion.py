"""Deleting a workflow (``actors.deletion``) as given(events) / when / then, and the listing
filters (``projections.search``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actors import control, deletion, workflow
from actors.commands import RetryWorkflow
from actors.workflow_state import WorkflowState
from events.base import Event
from events.catalog import WorkflowDeleted, WorkflowFailed, WorkflowSucceeded
from events.errors import CommandRefused, WorkflowNotFound
from projections.index import IndexEntry, micros
from projections.search import ListFilter, input_text, parse_moment
from projections.views import WorkflowSummary
from tests.unit.given_when_then import T0, at
from tests.unit.test_workflow_actor import WF, dag, started

ONE = dag(a={"labels": ("gpu", "linux")})


def given(*events: Event) -> WorkflowState:
    return workflow.replay(events, WorkflowState(workflow_id=WF))


def test_an_ended_workflow_gets_a_tombstone_naming_who_when_and_its_end() -> None:
    state = given(started(ONE), WorkflowFailed(workflow_id=WF, reason="boom", ended_at=at(5)))
    event = deletion.decide(state, by="ops", reason="test run", at=at(9))
    assert event == WorkflowDeleted(
        workflow_id=WF,
        by="ops",
        reason="test run",
        name=ONE.name,
        status="failed",
        ended_at=at(5),
        at=at(9),
    )


def test_an_open_workflow_is_refused_saying_what_to_do() -> None:
    with pytest.raises(CommandRefused, match=r"it is running; only an ended workflow .* cancel"):
        deletion.decide(given(started(ONE)), by="ops", reason=None, at=at(1))


def test_an_unknown_or_deleted_workflow_is_not_found() -> None:
    with pytest.raises(WorkflowNotFound):
        deletion.decide(given(), by="ops", reason=None, at=at(1))
    ended = given(started(ONE), WorkflowSucceeded(workflow_id=WF, ended_at=at(1)))
    tombstone = deletion.decide(ended, by="ops", reason=None, at=at(2))
    gone = workflow.evolve(ended, tombstone)
    assert gone.deleted and gone.status is None
    with pytest.raises(WorkflowNotFound):
        deletion.decide(gone, by="ops", reason=None, at=at(3))


def test_nothing_reopens_a_deleted_workflow() -> None:
    # A retry decided after the tombstone (the engine reloads on its CAS conflict) is refused.
    state = given(
        started(ONE),
        WorkflowFailed(workflow_id=WF, reason="boom", ended_at=at(1)),
        WorkflowDeleted(workflow_id=WF, by="ops", name=ONE.name, status="failed", at=at(2)),
    )
    with pytest.raises(WorkflowNotFound):
        control.decide(state, RetryWorkflow(workflow_id=WF, by="ops", now=at(3)))


def test_expired_counts_from_the_end() -> None:
    keep = timedelta(days=30)
    assert deletion.expired(at(0), now=at(0) + keep + timedelta(seconds=1), retention=keep)
    assert not deletion.expired(at(0), now=at(0) + keep, retention=keep)
    assert not deletion.expired(None, now=at(0) + 10 * keep, retention=keep)


def _row(**fields: object) -> WorkflowSummary:
    return WorkflowSummary(workflow_id=WF, name="n", status="succeeded", **fields)  # type: ignore[arg-type]


def test_filters_on_inputs_labels_parent_and_end() -> None:
    row = _row(inputs={"env": "prod", "n": 3, "on": True}, labels=("gpu", "linux"), ended_at=T0)
    assert ListFilter(inputs={"env": "prod", "n": "3", "on": "true"}).takes_row(row)
    assert not ListFilter(inputs={"env": "dev"}).takes_row(row)
    assert not ListFilter(inputs={"missing": ""}).takes_row(row)
    assert ListFilter(labels=("gpu",)).takes_row(row)
    assert not ListFilter(labels=("gpu", "arm")).takes_row(row)
    assert not ListFilter(parent="wf-0").takes_row(row)
    assert ListFilter(parent="wf-0").takes_row(_row(parent_workflow_id="wf-0"))
    assert ListFilter(ended_before=at(1)).takes_row(row)
    assert not ListFilter(ended_before=T0).takes_row(row)
    assert not ListFilter(ended_before=at(1)).takes_row(_row())  # open: no end
    assert input_text(["a", 1]) == '["a",1]'


def test_start_bounds_are_checked_on_the_index_entry_inclusively() -> None:
    entry = IndexEntry(seq=1, workflow_id=WF, name="n", status="running", started_us=micros(T0))
    assert ListFilter(since=T0, until=T0).takes_entry(entry)
    assert not ListFilter(since=at(1)).takes_entry(entry)
    assert not ListFilter(until=at(-1)).takes_entry(entry)
    assert not ListFilter().active and ListFilter(labels=("x",)).active


def test_moments_are_durations_ago_or_rfc3339() -> None:
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    assert parse_moment("2h", now=now) == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert parse_moment("2026-12-01T08:00:00Z", now=now) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert parse_moment("2026-12-01T08:00:00", now=now).tzinfo is UTC
    with pytest.raises(ValueError, match=r"neither a duration .* nor an RFC 3339 time"):
        parse_moment("yesterday", now=now)
