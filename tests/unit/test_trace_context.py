"""The caller's W3C trace context: parsed, validated on start requests, carried to every job."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from actors import workflow
from actors.commands import Advance, StartWorkflow
from actors.definitions import parse_workflow
from events.catalog import JobQueued
from events.requests import StartRequest
from telemetry.tracing import parse_traceparent, workflow_ids

TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CALLER = f"00-{TRACE}-{SPAN}-01"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_w3c_traceparent_gives_its_trace_and_span_ids() -> None:
    assert parse_traceparent(CALLER) == (int(TRACE, 16), int(SPAN, 16))


@pytest.mark.parametrize(
    "value",
    [None, "", "01-" + TRACE + "-" + SPAN + "-01", f"00-{'0' * 32}-{SPAN}-01",
     f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-{SPAN}-01", f"00-{TRACE}-{SPAN}"],
)  # fmt: skip
def test_anything_else_is_no_trace_context(value: str | None) -> None:
    assert parse_traceparent(value) is None


def test_a_joined_run_keeps_its_derived_span_id_in_the_callers_trace() -> None:
    own_trace, own_span = workflow_ids("wf-1")
    assert workflow_ids("wf-1", CALLER) == (int(TRACE, 16), own_span)
    assert own_trace != int(TRACE, 16)


def test_a_start_request_refuses_a_malformed_traceparent() -> None:
    with pytest.raises(ValidationError, match="traceparent"):
        StartRequest(workflow_id="wf-1", definition={}, traceparent="00-xyz")


def _started(traceparent: str | None) -> workflow.WorkflowState:
    definition = parse_workflow({"name": "t", "jobs": {"a": {"run": "true"}, "b": {
        "run": "true", "needs": ["a"], "retry": {"max_attempts": 2}}}})  # fmt: skip
    start = StartWorkflow(workflow_id="wf-1", definition=definition, traceparent=traceparent,
                          now=NOW)  # fmt: skip
    return workflow.replay(workflow.decide(workflow.WorkflowState("wf-1"), start))


def test_given_a_run_started_in_a_trace_when_a_job_is_queued_then_its_spec_carries_it() -> None:
    state = _started(CALLER)
    assert state.traceparent == CALLER
    queued = workflow.decide(state, Advance(workflow_id="wf-1", now=NOW))
    assert [e.spec.traceparent for e in queued if isinstance(e, JobQueued)] == [CALLER]


def test_given_a_run_without_a_trace_when_a_job_is_queued_then_its_spec_has_none() -> None:
    queued = workflow.decide(_started(None), Advance(workflow_id="wf-1", now=NOW))
    assert [e.spec.traceparent for e in queued if isinstance(e, JobQueued)] == [None]
