"""Priorities as data: validation with located errors, what a queued job carries, how a priority
routes its dispatch, and the actors deciding it (given/when/then)."""

from __future__ import annotations

from typing import Any

import pytest

from actors import job
from actors.commands import Advance, AnyJobCommand, RequeueJob, StartWorkflow
from actors.definitions import parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.job import JobState
from events import priority, subjects
from events.base import Event
from events.catalog import (
    JobEvent,
    JobFailed,
    JobQueued,
    JobSpec,
    JobStarted,
    WorkflowStarted,
)
from events.definition import RetryPolicy
from events.dispatch import InvalidDispatch, LabelSet
from events.errors import InvalidWorkflow
from tests.unit.given_when_then import T0, Actor, at, workflow_actor

WF = "wf-1"
WFA = workflow_actor(WF)
JOB: Actor[JobState, AnyJobCommand, JobEvent] = Actor(
    initial=lambda: JobState(workflow_id=WF, job="j"), evolve=job.evolve, decide=job.decide
)


def definition(**top: Any) -> dict[str, Any]:
    return {"name": "ranked", **top, "jobs": top.pop("jobs", {"a": {"run": "true"}})}


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(InvalidWorkflow) as info:
        parse_workflow(raw)
    return str(info.value)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "got 0"),
        (11, "got 11"),
        ("high", "got 'high'"),
        (2.5, "got 2.5"),
        (True, "got True"),
    ],
)
def test_a_job_priority_that_is_not_1_to_10_is_located(value: object, shown: str) -> None:
    raw = definition(jobs={"a": {"run": "true"}, "b": {"run": "true", "priority": value}})
    message = problems(raw)
    assert "jobs.b.priority: must be a whole number from 1 (lowest) to 10 (highest)" in message
    assert shown in message


def test_a_workflow_priority_out_of_range_is_located() -> None:
    assert "priority: must be a whole number from 1 (lowest) to 10 (highest), got 42" in problems(
        definition(priority=42)
    )


@pytest.mark.parametrize(
    "body",
    [
        {"wait_for": {"signal": "go"}, "priority": 3},
        {"set": {"x": "1"}, "priority": 3},
        {"sleep": "1s", "priority": 3},
    ],
)
def test_a_priority_on_a_job_no_worker_runs_is_refused(body: dict[str, Any]) -> None:
    assert "jobs.a.priority" in problems(definition(jobs={"a": body}))


def test_priorities_parse_and_survive_the_mapping_a_start_sends() -> None:
    parsed = parse_workflow(
        definition(priority=2, jobs={"a": {"run": "true"}, "b": {"run": "x", "priority": 10}})
    )
    assert (parsed.priority, parsed.jobs["a"].priority, parsed.jobs["b"].priority) == (2, None, 10)
    assert parse_workflow(definition_mapping(parsed)) == parsed


# --- routing ----------------------------------------------------------------------------------


def test_only_a_priority_other_than_the_default_routes_to_a_level_of_its_own() -> None:
    assert [priority.level(p) for p in (None, 5, 1, 10)] == [None, None, 1, 10]

    def queued(p: int | None) -> JobQueued:
        spec = JobSpec(run="x", labels=("gpu",), priority=p)
        return JobQueued(workflow_id=WF, job="j", attempt=1, spec=spec, queued_at=T0)

    prefix = f"evt.{subjects.partition_of(WF)}.{WF}.job.j.JobQueued"
    assert queued(None).subject() == queued(5).subject() == f"{prefix}.gpu"
    assert (queued(9).subject(), queued(9).route) == (f"{prefix}.gpu.p9", "gpu.p9")
    parsed = subjects.parse_event_subject(queued(9).subject())
    assert parsed is not None and (parsed.job, parsed.event_type) == ("j", "JobQueued")
    assert subjects.actor_filter_of(queued(9).subject()) == subjects.job_actor_filter(WF, "j")


def test_a_level_is_a_label_set_entry_with_a_consumer_and_filter_of_its_own() -> None:
    plain, high = LabelSet.of_route("@resize+gpu"), LabelSet.of_route("@resize+gpu.p9")
    assert plain == LabelSet.of(["gpu", "@resize"]) and plain.priority is None
    assert high.priority == 9 and high.requirements == plain.requirements
    assert high.consumer == f"{plain.consumer}-p9"
    assert high.subject == f"{plain.subject}.p9"
    assert plain.encode() == b'{"token":"@resize+gpu","requirements":["@resize","gpu"]}'
    assert LabelSet.decode(high.encode()) == high
    assert (high.rank, plain.rank) == (9, 5)


@pytest.mark.parametrize("route", ["gpu.p5", "gpu.p11", "gpu.high", "gpu.p"])
def test_a_route_naming_no_level_is_refused(route: str) -> None:
    with pytest.raises(InvalidDispatch):
        LabelSet.of_route(route)


def test_a_label_set_entry_with_the_default_or_no_priority_as_a_level_is_refused() -> None:
    for level in (5, 0, 12):
        raw = b'{"token":"gpu","requirements":["gpu"],"priority":%d}' % level
        with pytest.raises(InvalidDispatch, match="no priority level"):
            LabelSet.decode(raw)


# --- the actors -------------------------------------------------------------------------------


def start(raw: dict[str, Any]) -> WorkflowStarted:
    return WorkflowStarted(workflow_id=WF, definition=parse_workflow(raw), started_at=T0)


def queued_priorities(events: list[Event]) -> dict[str, int | None]:
    return {e.job: e.spec.priority for e in events if isinstance(e, JobQueued)}


def test_a_job_is_queued_at_its_own_priority_else_its_workflows() -> None:
    raw = definition(priority=3, jobs={"a": {"run": "x"}, "b": {"run": "y", "priority": 9}})
    when = WFA.given(start(raw)).when(Advance(workflow_id=WF, now=at(1)))
    assert queued_priorities(when.events()) == {"a": 3, "b": 9}


def test_without_any_priority_a_job_is_queued_as_before() -> None:
    when = WFA.given(start(definition())).when(Advance(workflow_id=WF, now=at(1)))
    [queued] = when.events()
    assert isinstance(queued, JobQueued) and queued.spec.priority is None
    assert "priority" not in queued.model_dump(exclude_defaults=True)["spec"]


def test_fan_out_instances_take_the_workflows_priority() -> None:
    raw = definition(priority=8, jobs={"each": {"run": "x", "strategy": {"matrix": {"n": [1, 2]}}}})
    fanned = WFA.given(start(raw)).when(Advance(workflow_id=WF, now=at(1))).events()
    when = WFA.given(start(raw), *fanned).when(Advance(workflow_id=WF, now=at(2)))
    assert queued_priorities(when.events()) == {"each-0": 8, "each-1": 8}


def test_a_start_records_the_definition_with_its_priority() -> None:
    command = StartWorkflow(
        workflow_id=WF, definition=parse_workflow(definition(priority=7)), now=T0
    )
    [started] = WFA.given().when(command).events()
    assert isinstance(started, WorkflowStarted) and started.definition.priority == 7


def test_a_retry_is_queued_at_the_priority_of_the_attempt_before() -> None:
    spec = JobSpec(run="x", priority=2)
    retry = RetryPolicy(max_attempts=2)
    history = (
        JobQueued(workflow_id=WF, job="j", attempt=1, spec=spec, retry=retry, queued_at=T0),
        JobStarted(
            workflow_id=WF,
            job="j",
            attempt=1,
            epoch=1,
            worker_id="w",
            lease_ttl=30,
            started_at=at(1),
        ),
        JobFailed(
            workflow_id=WF,
            job="j",
            attempt=1,
            epoch=1,
            worker_id="w",
            error="boom",
            will_retry=True,
            ended_at=at(2),
        ),
    )
    [again] = (
        JOB.given(*history).when(RequeueJob(workflow_id=WF, job="j", attempt=2, now=at(3))).events()
    )
    assert isinstance(again, JobQueued) and again.spec.priority == 2
    assert again.subject().endswith(".JobQueued.~.p2")


def test_the_builder_sets_workflow_and_job_priorities_with_the_same_checks() -> None:
    from sdk.builder import Workflow

    wf = Workflow("ranked", priority=3)
    wf.job("a", run="true", priority=9)
    wf.job("b", run="true")
    built = wf.build()
    assert (built.priority, built.jobs["a"].priority, built.jobs["b"].priority) == (3, 9, None)
    bad = Workflow("ranked")
    bad.job("a", run="true", priority=0)
    with pytest.raises(InvalidWorkflow, match=r"jobs\.a\.priority: must be a whole number"):
        bad.build()


@pytest.mark.parametrize(
    ("value", "shown"), [("11", "11 is not in the range 1<=x<=10"), ("high", "'high'")]
)
def test_a_run_priority_out_of_range_is_a_usage_error_before_connecting(
    value: str, shown: str
) -> None:
    from click.testing import CliRunner

    from sdk.cli import main

    nowhere = ["--nats", "nats://127.0.0.1:1"]
    result = CliRunner().invoke(main, ["run", "examples/hello.yaml", "--priority", value, *nowhere])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--priority'" in result.output and shown in result.output
    assert "cannot reach" not in result.output
