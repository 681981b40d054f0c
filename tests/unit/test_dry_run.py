"""Dry runs (``sdk.dry_run``): the whole DAG decided in process by the pure actors, with mocked
outputs and failures, no server and no workers."""

from __future__ import annotations

import pytest

from events.definition import JobDefinition, WorkflowDefinition
from events.errors import InvalidWorkflow
from sdk import DryRun, dry_run
from sdk.builder import Workflow
from sdk.errors import InvalidArgument

RELEASE = {
    "name": "release",
    "inputs": {"version": {"type": "string", "default": "1.0"}},
    "vars": {"region": "eu"},
    "jobs": {
        "build": {"run": "make ${{ inputs.version }}"},
        "test": {"needs": ["build"], "run": "./test ${{ needs.build.outputs.artifact }}"},
        "lint": {"needs": ["build"], "run": "./lint", "on_failure": "continue"},
        "deploy": {
            "needs": ["test", "build"],
            "if": "needs.build.outputs.artifact != ''",
            "uses": "deploy",
            "with": {"to": "${{ vars.region }}"},
        },
        "notify": {"needs_any": ["deploy", "lint"], "if": "always()", "run": "./notify"},
        "rollback": {"needs": ["deploy"], "if": "failure()", "run": "./rollback"},
    },
}


def statuses(result: DryRun) -> dict[str, str]:
    return {name: job.status for name, job in result.jobs.items()}


def test_unmocked_jobs_succeed_with_empty_outputs_and_conditions_see_them() -> None:
    result = dry_run(RELEASE)
    assert result.status == "succeeded" and result.succeeded
    assert statuses(result)["deploy"] == "skipped"
    assert result.job("deploy").reason == ("condition is false: needs.build.outputs.artifact != ''")
    assert result.job("build").run == "make 1.0"
    assert result.ran == ("build", "test", "lint", "notify")


def test_mocked_outputs_flow_into_templates_and_conditions() -> None:
    result = dry_run(
        RELEASE, inputs={"version": "2.0"}, mocks={"build": {"artifact": "app.tgz", "n": 3}}
    )
    assert result.job("build").outputs == {"artifact": "app.tgz", "n": "3"}
    assert result.job("build").mocked
    assert result.job("test").run == "./test app.tgz"
    assert result.job("deploy").status == "succeeded"
    assert (result.job("deploy").uses, result.job("deploy").with_) == ("deploy", {"to": "eu"})
    assert statuses(result)["rollback"] == "skipped"


def test_a_failure_uses_up_the_retries_and_is_followed_as_the_engine_would() -> None:
    raw = {**RELEASE, "jobs": {**RELEASE["jobs"]}}  # type: ignore[dict-item]
    raw["jobs"]["deploy"] = {**raw["jobs"]["deploy"], "retry": {"max_attempts": 3}}
    result = dry_run(raw, mocks={"build": {"artifact": "a"}}, failures=["deploy", "lint"])
    assert result.status == "failed"
    assert result.reason == "1 job(s) failed: deploy"  # lint's on_failure: continue
    deploy = result.job("deploy")
    assert (deploy.status, deploy.attempts, deploy.failed_on_purpose) == ("failed", 3, True)
    assert deploy.reason == "failed on purpose (dry run)"
    assert statuses(result)["rollback"] == "succeeded"  # if: failure()
    assert statuses(result)["notify"] == "succeeded"  # always()


def test_retry_forever_stops_after_a_bound_instead_of_looping() -> None:
    raw = {"name": "f", "jobs": {"a": {"run": "x", "on_failure": "retry_forever"}}}
    result = dry_run(raw, failures=["a"])
    assert (result.status, result.job("a").attempts) == ("failed", 25)
    assert "each of 25 attempts" in (result.job("a").reason or "")


def test_a_job_kind_the_simulator_cannot_play_is_reported_not_crashed_on() -> None:
    definition = WorkflowDefinition(
        name="odd",
        jobs={
            "odd": JobDefinition(name="odd"),
            "after": JobDefinition(name="after", run="x", needs=("odd",), **{"if": "always()"}),
        },
    )
    result = dry_run(definition)
    assert result.job("odd").status == "unsupported"
    assert "neither run nor uses" in (result.job("odd").reason or "")
    assert (result.status, result.job("after").status) == ("failed", "succeeded")


def test_bad_inputs_mocks_and_failures_are_refused_clearly() -> None:
    with pytest.raises(InvalidWorkflow, match=r"inputs\.version: expected a string, got 2"):
        dry_run(RELEASE, inputs={"version": 2})
    with pytest.raises(InvalidArgument, match="'zz': the workflow has no such job"):
        dry_run(RELEASE, failures=["zz"])
    with pytest.raises(InvalidArgument, match="mock of 'build': expected a mapping"):
        dry_run(RELEASE, mocks={"build": ["a"]})  # type: ignore[dict-item]


def test_a_builder_and_a_file_work_too(tmp_path: object) -> None:
    built = Workflow("b")
    first = built.job("a", run="echo")
    built.job("b", run="echo ${{ needs.a.outputs.x }}", needs=[first])
    assert dry_run(built, mocks={"a": {"x": "1"}}).job("b").run == "echo 1"
    result = dry_run("examples/diamond.yaml", failures=["flaky"])
    assert result.status == "failed" and result.to_json_dict()["jobs"]["flaky"]["attempts"] == 3
