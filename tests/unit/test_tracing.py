"""Spans of a workflow run (``telemetry/tracing.py``) with the SDK's in-memory exporter: ids
derived from the workflow id, one root per trace even when an operator's retry ends the run
again, and log lines that name a workflow carrying its trace id."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from telemetry import tracing

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.use(exporter, service_name="test", batch=False)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def test_off_by_default_and_then_free() -> None:
    assert not tracing.enabled()
    tracing.record_workflow("wf-1", name="n", status="succeeded", started=T0, ended=T0)
    assert tracing.add_trace_id(None, "info", {"workflow_id": "wf-1"}) == {"workflow_id": "wf-1"}


def test_a_retried_run_keeps_one_root(exported: InMemorySpanExporter) -> None:
    wf = "wf-retried"
    trace_id, root_id = tracing.workflow_ids(wf)
    tracing.record_workflow(wf, name="n", status="failed", started=T0, ended=T0 + timedelta(1))
    tracing.record_span(wf, "job a", started=T0.timestamp(), ended=T0.timestamp() + 1,
                        attributes={})  # fmt: skip
    later = T0 + timedelta(days=2)
    tracing.record_workflow(wf, name="n", status="succeeded", started=later,
                            ended=later + timedelta(hours=1), retry=1)  # fmt: skip
    root, job, retry = exported.get_finished_spans()
    assert (root.name, root.context.trace_id, root.context.span_id, root.parent) == (
        "workflow n", trace_id, root_id, None,
    )  # fmt: skip
    assert root.status.is_ok is False
    for child in (job, retry):
        assert child.context.trace_id == trace_id
        assert child.parent is not None and child.parent.span_id == root_id
        assert child.context.span_id != root_id
    assert retry.name == "workflow n retry 1" and retry.attributes["jetwork.retry"] == 1


def test_log_lines_about_a_workflow_carry_its_trace_id(exported: InMemorySpanExporter) -> None:
    line = tracing.add_trace_id(None, "info", {"event": "job finished", "workflow_id": "wf-9"})
    assert (
        line["trace_id"]
        == tracing.trace_id_hex("wf-9")
        == f"{tracing.workflow_ids('wf-9')[0]:032x}"
    )
    assert "trace_id" not in tracing.add_trace_id(None, "info", {"event": "started"})
