"""Dry runs (``sdk.dry_run``) of fan-outs and sub-workflows: every instance decided with its
mocked outputs, a file child decided in process, a registered child mocked or said to be."""

from __future__ import annotations

import json

import pytest

from sdk import DryRun, dry_run
from sdk.errors import InvalidArgument

FOR_EACH = {
    "name": "fan",
    "jobs": {
        "list": {"run": "ls"},
        "each": {
            "needs": ["list"],
            "for_each": "${{ fromJSON(needs.list.outputs.items) }}",
            "max_parallel": 2,
            "run": "echo ${{ item }} ${{ index }}",
        },
        "after": {"needs": ["each"], "run": "echo '${{ needs.each.outputs.v }}'"},
    },
}


def statuses(result: DryRun) -> dict[str, str]:
    return {name: job.status for name, job in result.jobs.items()}


def test_a_matrix_runs_every_instance_and_ends() -> None:
    result = dry_run("examples/matrix.yaml")
    assert result.status == "succeeded"
    assert list(result.jobs) == ["test", "test-0", "test-1", "test-2", "test-3", "summary"]
    assert set(statuses(result).values()) == {"succeeded"}
    assert result.job("test").instances == 4
    assert result.job("test-2").instance_of == "test"
    assert "mac with python" in (result.job("test-2").run or "")
    assert result.ran == ("test-0", "test-1", "test-2", "test-3", "summary")


def test_for_each_runs_over_the_mocked_outputs_of_its_upstream() -> None:
    result = dry_run(
        FOR_EACH,
        mocks={"list": {"items": ["a", "b", "c"]}, "each": {"v": "all"}, "each-1": {"v": "B"}},
    )
    assert result.job("list").outputs == {"items": '["a","b","c"]'}  # a list is stored as JSON
    assert [result.job(f"each-{i}").run for i in range(3)] == ["echo a 0", "echo b 1", "echo c 2"]
    assert result.job("each").outputs == {"v": '["all","B","all"]'}
    assert (result.job("each-0").mocked, result.job("each-1").mocked) == (True, True)
    assert result.job("after").run == """echo '["all","B","all"]'"""
    assert result.status == "succeeded"


def test_failing_one_instance_fails_fast_and_fails_the_job() -> None:
    result = dry_run(FOR_EACH, mocks={"list": {"items": [1, 2, 3, 4]}}, failures=["each-1"])
    assert result.status == "failed"
    assert statuses(result) == {
        "list": "succeeded",
        "each": "failed",
        "each-0": "succeeded",
        "each-1": "failed",
        "each-2": "cancelled",
        "each-3": "cancelled",
        "after": "skipped",
    }
    assert result.job("each-1").failed_on_purpose
    assert result.job("each").reason == "1 of 4 instances failed: each-1; 2 not started (fail_fast)"


def test_failing_a_fanned_out_job_fails_every_instance_it_starts() -> None:
    raw = json.loads(json.dumps(FOR_EACH))
    raw["jobs"]["each"]["fail_fast"] = False
    result = dry_run(raw, mocks={"list": {"items": [1, 2]}}, failures=["each"])
    assert (result.job("each-0").status, result.job("each-1").status) == ("failed", "failed")
    assert result.reason == "1 job(s) failed: each"


def test_an_unmocked_for_each_upstream_gets_a_hint() -> None:
    result = dry_run(FOR_EACH)
    assert result.job("each").status == "failed"
    assert any("each: for_each reads outputs of list" in note for note in result.notes)


def test_instance_names_are_checked_where_they_can_be() -> None:
    with pytest.raises(InvalidArgument, match=r"'test-4': test fans out into 4 instances"):
        dry_run("examples/matrix.yaml", failures=["test-4"])
    with pytest.raises(InvalidArgument, match=r"'after-1': the workflow has no such job"):
        dry_run(FOR_EACH, failures=["after-1"])
    result = dry_run(FOR_EACH, mocks={"list": {"items": [1]}, "each-5": {"v": "x"}})
    assert result.notes == ("each-5: no such instance ran; its mock or failure was not used",)


def test_a_file_child_is_decided_in_process_and_its_outputs_flow_back() -> None:
    result = dry_run("examples/parent.yaml", mocks={"prepare": {"who": "ann"}})
    assert result.status == "succeeded"
    child = result.job("child")
    assert (child.workflow, child.mocked) == ("./child.yaml", False)
    assert child.child is not None and child.child.status == "succeeded"
    assert child.child.inputs == {"who": "ann"}
    assert child.child.job("greet").run == 'echo "::set-output greeting=hello ann"'
    assert child.outputs == {"greeting": "", "letters": ""}  # the child's jobs ran unmocked
    assert result.to_json_dict()["jobs"]["child"]["child"]["jobs"]["count"]["status"] == (
        "succeeded"
    )


def test_a_child_mocked_as_one_unit_gives_its_outputs() -> None:
    result = dry_run("examples/parent.yaml", mocks={"child": {"greeting": "hi", "letters": 2}})
    child = result.job("child")
    assert (child.child, child.mocked, child.outputs) == (
        None,
        True,
        {"greeting": "hi", "letters": "2"},
    )
    assert result.job("report").run == "echo \"the child said 'hi' (2 letters)\""
    assert result.outputs == {"greeting": "hi"}


def test_a_failed_child_uses_up_the_jobs_retries() -> None:
    result = dry_run("examples/parent.yaml", failures=["child"])
    child = result.job("child")
    assert (child.status, child.attempts, child.failed_on_purpose) == ("failed", 2, True)
    assert "failed on purpose (dry run)" in (child.reason or "")
    assert (result.status, result.job("report").status) == ("failed", "skipped")


def test_a_registered_child_is_treated_as_mocked_and_said_to_be() -> None:
    result = dry_run("examples/parent_named.yaml")
    assert result.status == "succeeded"
    assert "registered definition" in (result.job("hello").reason or "")
    assert result.notes[0].startswith("hello: 'child' is a registered definition, not read")
    assert "--mock hello=" in result.notes[0]
    mocked = dry_run("examples/parent_named.yaml", mocks={"hello": {"greeting": "yo"}})
    assert mocked.job("hello").mocked and mocked.outputs["greeting"] == "yo"
    assert [note.split(":")[0] for note in mocked.notes] == ["shout"]


def test_a_fan_out_of_children_decides_one_child_per_instance() -> None:
    result = dry_run(
        "examples/fan_out_children.yaml",
        mocks={"list": {"who": ["ann", "bo", "cy"]}, "greet-2": {"greeting": "hey"}},
    )
    assert result.status == "succeeded"
    runs = [result.job(f"greet-{i}").child for i in range(3)]
    assert [run.inputs if run else None for run in runs] == [
        {"who": "ann (#0)"},
        {"who": "bo (#1)"},
        None,  # mocked as one unit
    ]
    assert result.job("greet").outputs["greeting"] == '["","","hey"]'


def test_a_large_fan_out_stays_quick() -> None:
    raw = json.loads(json.dumps(FOR_EACH))
    raw["jobs"]["each"]["max_parallel"] = 50
    result = dry_run(raw, mocks={"list": {"items": list(range(2000))}})
    assert result.status == "succeeded" and result.job("each").instances == 2000


def test_a_wait_is_answered_with_its_mock_or_no_data_and_said_to_be() -> None:
    result = dry_run("examples/approval.yaml", mocks={"approve": {"by": "ann"}})
    approve = result.job("approve")
    assert (approve.status, approve.waits_for, approve.mocked) == (
        "succeeded",
        "signal 'approve'",
        True,
    )
    assert approve.outputs == {"by": "ann"}
    assert result.notes == () and result.status == "succeeded"
    plain = dry_run("examples/approval.yaml")
    assert plain.notes == (
        "approve: waits for signal 'approve': treated as arriving with no data; "
        "--mock approve='{...}' gives its data",
    )


def test_a_failed_wait_fails_as_its_timeout_would() -> None:
    result = dry_run("examples/approval.yaml", failures=["approve"])
    assert result.job("approve").reason == (
        "failed on purpose (dry run): no signal 'approve' arrived"
    )
    assert (result.status, result.job("deploy").status) == ("failed", "skipped")


def test_a_fan_out_of_waits_answers_each_instance() -> None:
    result = dry_run("examples/rollout.yaml", mocks={"approve-1": {"by": "bo"}})
    assert result.status == "succeeded"
    assert [result.job(f"approve-{i}").waits_for for i in range(3)] == [
        "signal 'approve-eu'",
        "signal 'approve-us'",
        "signal 'approve-ap'",
    ]
    assert result.job("approve").outputs == {"by": '[null,"bo",null]'}
    assert [note.split(":")[0] for note in result.notes] == ["approve"]


def test_a_webhook_wait_is_answered_with_what_it_matches() -> None:
    result = dry_run("examples/webhook.yaml", inputs={"order": "7"})
    assert result.job("paid").outputs == {"type": "payment_received", "order": "7"}
    assert result.job("paid").waits_for == "a webhook request"
    assert "treated as arriving with only what it matches" in result.notes[0]


def test_a_sleep_ends_at_once_and_a_concurrency_group_admits_the_lone_run() -> None:
    steps = dry_run("examples/steps.yaml")
    assert (steps.status, steps.job("pause").status) == ("succeeded", "succeeded")
    assert steps.job("publish").status == "succeeded"
    deploy = dry_run("examples/deploy.yaml")
    assert deploy.status == "succeeded"
    assert deploy.notes == (
        "concurrency group 'deploy-staging': admitted at once (no other run here; a real run "
        "waits for a slot)",
    )
