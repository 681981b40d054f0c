"""Namespaces, the pure parts: names, label-set members and serving, keys, recent lists, what
the workflow actor records and stamps on its jobs, and the engine's refusal of a start whose id
another namespace has (given/when/then, no I/O)."""

from __future__ import annotations

import pytest

from actors.engine.reactions import Start, react
from actors.workflow import WorkflowState
from events import namespaces
from events.catalog import JobQueued, JobSpec, WorkflowStarted
from events.labels import capabilities, labelset_token, requirement_set, serves, token_of
from events.requests import StartRequest, workflow_id_for
from projections.recent import list_id, lists_of
from sdk.worker.concurrency import group_key
from sdk.worker.rate_limits import limit_key, limited_as
from tests.unit.given_when_then import T0, at
from tests.unit.test_reactions import History, queued, succeeded
from tests.unit.test_workflow_actor import WF, dag, kinds

# --- names and members ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "team-a", "T_1", "x" * 64])
def test_valid_names(name: str) -> None:
    assert namespaces.require(name) == name


@pytest.mark.parametrize("name", ["", "a.b", "a b", "ns:x", "*", ">", "x" * 65])
def test_invalid_names_are_refused_saying_where(name: str) -> None:
    with pytest.raises(namespaces.InvalidNamespace, match=r"--namespace .* not a valid namespace"):
        namespaces.require(name, where="--namespace")


def test_the_default_namespace_is_recorded_as_nothing() -> None:
    assert namespaces.stored("default") is None and namespaces.stored(None) is None
    assert namespaces.stored("team-a") == "team-a"
    assert namespaces.shown(None) == "default"
    assert namespaces.member(None) is None and namespaces.member("default") is None
    assert namespaces.key_prefix(None) == "" and namespaces.key_prefix("team-a") == "ns.team-a."


def test_the_process_namespace_is_the_option_else_the_variable_else_default() -> None:
    assert namespaces.process_namespace({}) == "default"
    assert namespaces.process_namespace({"JETWORK_NAMESPACE": "team-b"}) == "team-b"
    with pytest.raises(namespaces.InvalidNamespace, match="JETWORK_NAMESPACE"):
        namespaces.process_namespace({"JETWORK_NAMESPACE": "no good"})
    namespaces.set_process_namespace("team-a")
    try:
        assert namespaces.process_namespace({"JETWORK_NAMESPACE": "team-b"}) == "team-a"
    finally:
        namespaces.set_process_namespace(None)


# --- label routing ----------------------------------------------------------------------------


def test_a_namespaced_job_requires_its_namespace_member_and_the_default_nothing_more() -> None:
    assert requirement_set(["gpu"], "resize") == {"gpu", "@resize"}
    assert requirement_set(["gpu"], "resize", "team-a") == {"gpu", "@resize", "ns:team-a"}
    assert token_of(["gpu"], None, None) == "gpu"
    assert token_of(["gpu"], None, "team-a") == "gpu+ns:team-a"
    assert token_of([], None, "team-a") == "ns:team-a"
    assert labelset_token(set()) == "~"


def test_a_worker_serves_only_its_own_namespace() -> None:
    default = capabilities(["gpu"], ["resize"])
    team_a = capabilities(["gpu"], ["resize"], "team-a")
    team_b = capabilities(["gpu"], ["resize"], "team-b")
    default_job = requirement_set(["gpu"])
    a_job = requirement_set(["gpu"], None, "team-a")
    assert serves(default, default_job) and not serves(default, a_job)
    # team-a's worker offers everything the default job needs, yet is not the default's
    assert serves(team_a, a_job) and not serves(team_a, default_job)
    assert not serves(team_b, a_job)
    assert serves(team_a, requirement_set([], None, "team-a"))  # its "~" jobs


def test_job_queued_routes_by_the_spec_namespace() -> None:
    event = queued("a", labels=("gpu",), namespace="team-a")
    assert event.labelset_token == "gpu+ns:team-a"
    assert event.subject().endswith(".JobQueued.gpu+ns:team-a")
    assert queued("a", labels=("gpu",)).labelset_token == "gpu"


# --- keys of limits, groups, idempotency, recent lists -----------------------------------------


def test_limits_and_groups_are_keyed_per_namespace() -> None:
    assert limited_as(JobSpec(uses="h")) == ("handler", "h")
    assert limited_as(JobSpec(uses="h", namespace="team-a")) == ("ns.team-a.handler", "h")
    assert limited_as(JobSpec(labels=("x",), namespace="t")) == ("ns.t.labels", "x")
    assert limit_key(*limited_as(JobSpec(uses="h", namespace="t"))) == "limit.ns.t.handler.h"
    spec = JobSpec.model_validate({"run": "x", "concurrency": {"group": "deploy", "limit": 1}})
    assert group_key(spec) == "deploy"
    assert group_key(spec.model_copy(update={"namespace": "t"})) == "ns.t.deploy"
    assert group_key(JobSpec(run="x")) is None


def test_idempotency_keys_name_one_workflow_per_namespace() -> None:
    assert workflow_id_for("k") == workflow_id_for("k", namespace=None)
    assert workflow_id_for("k", namespace="a") != workflow_id_for("k")
    assert workflow_id_for("k", namespace="a") != workflow_id_for("k", namespace="b")


def test_recent_lists_are_the_namespaces_own() -> None:
    assert list_id(status=None, name=None) == "all"
    assert list_id(status=None, name=None, namespace="t") == "x.t.all"
    assert list_id(status="failed", name="etl", namespace="t") == "x.t.sn.failed.etl"
    assert list_id(status="running", name=None, namespace="t") is None
    assert lists_of("etl", "failed", "t") == [
        "x.t.all",
        "x.t.n.etl",
        "x.t.s.failed",
        "x.t.sn.failed.etl",
    ]


# --- the workflow actor and the engine ---------------------------------------------------------


def start(namespace: str | None, wf: str = WF) -> Start:
    definition = dag(a={"labels": ("gpu",)}, b={"needs": ("a",)})
    request = StartRequest(workflow_id=wf, definition={}, namespace=namespace)
    return Start(request, definition)


def test_a_start_records_its_namespace_and_stamps_it_on_every_queued_job() -> None:
    reaction = react(WorkflowState(workflow_id=WF), [start("team-a")], at(1))
    started, queued_a = reaction.decided
    assert isinstance(started, WorkflowStarted) and started.namespace == "team-a"
    assert isinstance(queued_a, JobQueued) and queued_a.spec.namespace == "team-a"
    assert queued_a.labelset_token == "gpu+ns:team-a"
    assert reaction.state.namespace == "team-a"


def test_a_default_start_records_nothing_and_its_jobs_route_as_before() -> None:
    for given in (None, "default"):
        reaction = react(WorkflowState(workflow_id=WF), [start(given)], at(1))
        started, queued_a = reaction.decided
        assert isinstance(started, WorkflowStarted) and started.namespace is None
        assert isinstance(queued_a, JobQueued) and queued_a.spec.namespace is None
        assert queued_a.labelset_token == "gpu"


def test_jobs_made_ready_later_carry_the_namespace_too() -> None:
    first = react(WorkflowState(workflow_id=WF), [start("team-a")], at(1))
    history = History(*first.decided)
    later = react(history.state, [*history.add(succeeded("a"))], at(2))
    assert kinds(later.decided) == [("JobQueued", "b")]
    assert later.decided[0].spec.namespace == "team-a"  # type: ignore[attr-defined]


def test_a_start_whose_id_another_namespace_has_is_refused() -> None:
    history = History(
        WorkflowStarted(workflow_id=WF, definition=dag(a={}), started_at=T0, namespace="team-a"),
        queued("a", namespace="team-a"),
    )
    reaction = react(history.state, [start("team-b")], at(1))
    assert reaction.decided == [] and reaction.created == {}
    assert "taken in another namespace" in reaction.refused[0]
    assert "'team-b'" in reaction.refused[0] and "team-a" not in reaction.refused[0]
    # the same namespace again: idempotent as before
    again = react(history.state, [start("team-a")], at(1))
    assert again.decided == [] and again.created == {0: False} and again.refused == {}
    default = History(WorkflowStarted(workflow_id=WF, definition=dag(a={}), started_at=T0))
    default.add(queued("a"))
    refused = react(default.state, [start("team-a")], at(1))
    assert refused.refused and refused.created == {} and refused.decided == []


# --- quotas -----------------------------------------------------------------------------------


def test_a_quota_admits_up_to_its_limit_and_keeps_a_holders_place() -> None:
    from events.quotas import WorkflowHolder, admit

    one = admit([], "wf-1", 2, now=1.0)
    assert one == [WorkflowHolder(workflow_id="wf-1", since=1.0)]
    two = admit(one, "wf-2", 2, now=2.0)
    assert two is not None and [h.workflow_id for h in two] == ["wf-1", "wf-2"]
    assert admit(two, "wf-3", 2, now=3.0) is None  # full
    assert admit(two, "wf-1", 2, now=3.0) is two  # a redelivered start keeps its place


def test_quota_records_holders_and_refusals() -> None:
    from pydantic import ValidationError

    from events.quotas import (
        OverQuota,
        QuotaRecord,
        WorkflowHolder,
        decode_holders,
        encode_holders,
        jobs_group,
        quota_key,
        refusal,
        workflows_key,
    )

    record = QuotaRecord(max_running_workflows=1, over_quota=OverQuota.REFUSE)
    assert QuotaRecord.model_validate_json(record.encode()) == record
    with pytest.raises(ValidationError):
        QuotaRecord(max_running_jobs=0)
    holders = [WorkflowHolder(workflow_id="wf-1", since=5.0)]
    assert decode_holders(encode_holders(holders)) == holders and decode_holders(None) == []
    assert (quota_key("t"), workflows_key("t"), jobs_group("t")) == (
        "quota.t",
        "workflows.t",
        "jobs.t",
    )
    message = refusal("team-a", "wf-9", 1)
    assert "'wf-9'" in message and "namespace 'team-a' runs 1 workflow" in message
    assert "jetwork namespaces set team-a --max-running-workflows N" in message


def test_a_handlers_pause_switch_is_its_namespaces() -> None:
    from sdk.worker.pausing import Pauses, handler_key

    assert handler_key("charge") == "pause.handler.charge"
    assert handler_key("charge", "default") == "pause.handler.charge"
    assert handler_key("charge", "team-a") == "pause.ns.team-a.handler.charge"
    default = Pauses("w-1", handlers=lambda: ["charge"])
    team_a = Pauses("w-2", handlers=lambda: ["charge"], namespace="team-a")
    for pauses in (default, team_a):
        pauses.record(handler_key("charge", "team-a"), True)
    assert team_a.applies_to("charge") and team_a.paused == ("@charge",)
    assert not default.applies_to("charge") and default.paused == ()
