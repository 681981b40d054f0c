"""``ListFilter.may_take``: the check on a stored document decoded by orjson before its summary
is built refuses only what the full check (``takes_row``) refuses too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from projections.search import ListFilter
from projections.views import WorkflowView, summary

STARTED = datetime(2026, 12, 6, 14, 25, 37, tzinfo=UTC)
INPUTS: dict[str, Any] = {"env": "prod", "n": 3, "x": 1.5, "ok": True, "tags": ["a", "b"]}


def _docs(status: str = "failed") -> list[Any]:
    """The same workflow as a stored view and as a stored summary."""
    view = WorkflowView(
        workflow_id="wf-1", name="etl", status=status, started_at=STARTED, inputs=INPUTS
    )
    return [
        orjson.loads(WorkflowView.__pydantic_serializer__.to_json(view)),
        orjson.loads(summary(view).model_dump_json()),
    ]


@pytest.mark.parametrize(
    "inputs",
    [
        {"env": "prod"},
        {"n": "3"},
        {"x": "1.5"},
        {"ok": "true"},
        {"tags": '["a","b"]'},
        {"env": "prod", "n": "3"},
        {},
    ],
)
def test_what_matches_is_never_refused(inputs: dict[str, str]) -> None:
    where = ListFilter(inputs=inputs)
    row = summary(WorkflowView(workflow_id="wf-1", name="etl", status="failed", inputs=INPUTS))
    assert where.takes_row(row)
    for doc in _docs():
        assert where.may_take(doc)
        assert where.may_take(doc, "failed")


@pytest.mark.parametrize(
    ("inputs", "status"),
    [
        ({"env": "dev"}, None),
        ({"n": "4"}, None),
        ({"team": "t7"}, None),  # no such input
        ({"env": "prod"}, "succeeded"),
        ({}, "running"),
    ],
)
def test_a_different_input_or_status_is_refused(inputs: dict[str, str], status: str | None) -> None:
    for doc in _docs():
        assert not ListFilter(inputs=inputs).may_take(doc, status)


def test_a_document_of_another_shape_is_left_to_the_full_check() -> None:
    where = ListFilter(inputs={"env": "prod"})
    assert where.may_take(None, "failed")
    assert where.may_take([1, 2])
    assert where.may_take({"status": "failed"}, "failed")  # no inputs: the full check decides
