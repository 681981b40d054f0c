"""Concurrency groups: the job field's validation (located problems) and the group's name
rendered when the job is queued."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from actors import workflow
from actors.commands import Advance, StartWorkflow
from actors.definitions import parse_workflow
from events.catalog import JobFailed, JobQueued
from events.definition import Concurrency
from events.errors import InvalidWorkflow

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def job_with(concurrency: Any) -> dict[str, Any]:
    return {"name": "w", "inputs": {"env": {"default": "prod"}},
            "jobs": {"deploy": {"run": "true", "concurrency": concurrency}}}  # fmt: skip


def test_a_name_alone_is_a_group_of_one() -> None:
    parsed = parse_workflow(job_with("deploy"))
    assert parsed.jobs["deploy"].concurrency == Concurrency(group="deploy", limit=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, "jobs.deploy.concurrency: expected a group name or a mapping"),
        ({"limit": 2}, "jobs.deploy.concurrency.group: missing"),
        ({"group": "a b"}, "jobs.deploy.concurrency.group: "),
        ({"group": "g", "limit": 0}, "jobs.deploy.concurrency.limit: must be a whole number"),
        ({"group": "g", "cancel_in_progress": "yes"}, "jobs.deploy.concurrency.cancel_in_progress"),
        ({"group": "g-${{ inputs.nope }}"}, "jobs.deploy.concurrency.group: inputs.nope"),
        ({"group": "g", "size": 2}, "jobs.deploy.concurrency.size: unknown field"),
    ],
)
def test_a_bad_concurrency_is_a_located_problem(value: Any, expected: str) -> None:
    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow(job_with(value))
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def _queued(group: str, inputs: dict[str, Any]) -> list[Any]:
    definition = parse_workflow(job_with({"group": group, "limit": 2}))
    start = StartWorkflow(workflow_id="wf-1", definition=definition, inputs=inputs, now=NOW)
    state = workflow.replay(workflow.decide(workflow.WorkflowState("wf-1"), start))
    return workflow.decide(state, Advance(workflow_id="wf-1", now=NOW))


def test_given_a_templated_group_when_the_job_is_queued_then_its_spec_names_the_rendered_group(
) -> None:  # fmt: skip
    [queued] = _queued("deploy-${{ inputs.env }}", {"env": "eu"})
    assert isinstance(queued, JobQueued)
    assert queued.spec.concurrency == Concurrency(group="deploy-eu", limit=2)


def test_given_a_group_rendering_to_a_bad_name_when_queued_then_the_job_fails_saying_why(
) -> None:  # fmt: skip
    events = _queued("deploy-${{ inputs.env }}", {"env": "a b"})
    failed = [e for e in events if isinstance(e, JobFailed)]
    assert failed and "concurrency group renders to 'deploy-a b'" in failed[0].error
