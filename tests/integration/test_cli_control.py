"""``jetwork pause|resume|skip|retry|rerun|restart`` through the entry point, on a real engine:
what each prints (``--json`` too), what ``status`` and ``history`` show after, and the
refusals."""

from __future__ import annotations

import json
from pathlib import Path

from actors.job import JobState
from tests.engine_harness import Outcome
from tests.eventually import assert_eventually
from tests.integration.test_cli import Cli, cli, failed, ok, started, workflow_file  # noqa: F401  (fixtures)


async def status_of(run: Cli, workflow_id: str) -> dict[str, object]:
    view: dict[str, object] = json.loads(ok(await run("status", workflow_id, "--json")).stdout)
    return view


async def test_pause_and_resume_print_what_happened_and_history_says_who(
    cli: Cli,  # noqa: F811
    workflow_file: Path,  # noqa: F811
) -> None:
    await cli.runner.stop()  # nobody claims: a stays queued, b pending
    workflow_id = await started(cli, workflow_file)

    async def paused() -> bool:
        result = await cli("pause", workflow_id, "--by", "ops", "--reason", "freeze", "--json")
        # The start may still wait for the engine: then the pause waits behind it.
        return result.exit_code == 0 and json.loads(result.stdout)["applied"]

    await assert_eventually(paused)
    view = await status_of(cli, workflow_id)
    assert (view["status"], view["reason"]) == ("paused", "paused by ops: freeze")
    again = ok(await cli("pause", workflow_id))
    assert again.stderr.strip() == f"{workflow_id} is paused already"
    table = ok(await cli("status", workflow_id)).stdout
    assert "paused" in table and "reason: paused by ops: freeze" in table

    resumed = ok(await cli("resume", workflow_id, "--by", "ops"))
    assert resumed.stderr.strip() == f"resumed {workflow_id}"
    failed(await cli("resume", workflow_id), f"cannot resume workflow '{workflow_id}'",
           "it is not paused (it is running)")  # fmt: skip
    history = json.loads(ok(await cli("history", workflow_id, "--json")).stdout)
    controls = [(e["type"], e["data"].get("by")) for e in history if "Workflow" in e["type"]]
    assert controls == [
        ("WorkflowStarted", None),
        ("WorkflowPaused", "ops"),
        ("WorkflowResumed", "ops"),
    ]


async def test_skip_with_outputs_then_the_dependent_runs(
    cli: Cli,  # noqa: F811
    workflow_file: Path,  # noqa: F811
) -> None:
    await cli.runner.stop()
    workflow_id = await started(cli, workflow_file)
    failed(await cli("skip", workflow_id, "a", "--output", "novalue"), "expected KEY=VALUE")

    async def skipped() -> bool:
        result = await cli("skip", workflow_id, "a", "-o", "greeting=hi there", "--json")
        return result.exit_code == 0 and json.loads(result.stdout)["applied"]

    await assert_eventually(skipped)
    failed(await cli("skip", workflow_id, "zz"), "has no job 'zz' (its jobs: a, b)")
    view = await status_of(cli, workflow_id)
    jobs = view["jobs"]
    assert isinstance(jobs, dict)
    assert (jobs["a"]["status"], jobs["a"]["outputs"]) == ("skipped", {"greeting": "hi there"})
    assert jobs["b"]["status"] == "queued"  # a counts as succeeded: b was queued with its outputs


def fails_first(state: JobState) -> Outcome:
    if state.job == "a" and state.attempt == 1:
        return Outcome(error="flaky", retryable=False)
    return Outcome(outputs={"greeting": "hello"})


async def test_retry_runs_a_failed_workflow_again_and_is_refused_once_it_succeeded(
    cli: Cli,  # noqa: F811
    workflow_file: Path,  # noqa: F811
) -> None:
    cli.runner.behaviour = fails_first
    workflow_id = await started(cli, workflow_file)

    async def ended_failed() -> bool:
        return (await status_of(cli, workflow_id))["status"] == "failed"

    await assert_eventually(ended_failed)
    result = json.loads(ok(await cli("retry", workflow_id, "--reason", "flake", "--json")).stdout)
    assert result == {
        "workflow_id": workflow_id,
        "command": "retry",
        "applied": True,
        "changed": True,
    }

    async def ended_succeeded() -> bool:
        return (await status_of(cli, workflow_id))["status"] == "succeeded"

    await assert_eventually(ended_succeeded)
    jobs = (await status_of(cli, workflow_id))["jobs"]
    assert isinstance(jobs, dict)
    assert (jobs["a"]["attempts"], jobs["b"]["attempts"]) == (2, 1)
    failed(await cli("retry", workflow_id), "it succeeded; only a failed or cancelled workflow")


async def test_rerun_from_a_job_runs_it_and_its_dependents_again(
    cli: Cli,  # noqa: F811
    workflow_file: Path,  # noqa: F811
) -> None:
    cli.runner.behaviour = lambda state: Outcome(outputs={"greeting": f"hi{state.attempt}"})
    workflow_id = await started(cli, workflow_file)

    async def ended_succeeded() -> bool:
        return (await status_of(cli, workflow_id))["status"] == "succeeded"

    await assert_eventually(ended_succeeded)
    failed(await cli("rerun", workflow_id, "--from", "zz"), "has no job 'zz' (its jobs: a, b)")
    usage = await cli("rerun", workflow_id)
    assert usage.exit_code == 2 and "Missing option '--from'" in usage.output
    result = ok(await cli("rerun", workflow_id, "--from", "a", "--by", "ops", "--json"))
    assert json.loads(result.stdout) == {
        "workflow_id": workflow_id,
        "command": "rerun",
        "applied": True,
        "changed": True,
        "job": "a",
    }

    async def both_ran_twice() -> bool:
        view = await status_of(cli, workflow_id)
        jobs = view["jobs"]
        assert isinstance(jobs, dict)
        return view["status"] == "succeeded" and [jobs[n]["attempts"] for n in "ab"] == [2, 2]

    await assert_eventually(both_ran_twice)
    history = json.loads(ok(await cli("history", workflow_id, "--json")).stdout)
    reruns = [e["data"] for e in history if e["type"] == "WorkflowRerun"]
    assert [(r["by"], r["from_job"], r["jobs"]) for r in reruns] == [("ops", "a", ["a", "b"])]
    queued_b = [e["data"]["spec"]["run"] for e in history if e["type"] == "JobQueued"][-1]
    assert queued_b == "echo hi2 world"  # b read a's new output
    plain = ok(await cli("rerun", workflow_id, "--from", "b"))
    assert plain.stderr.strip() == f"reran {workflow_id} from b"


async def test_restart_prints_the_new_run_and_status_links_both_ways(
    cli: Cli,  # noqa: F811
    workflow_file: Path,  # noqa: F811
) -> None:
    workflow_id = await started(cli, workflow_file, "-i", "who=moon")

    async def ended_succeeded() -> bool:
        return (await status_of(cli, workflow_id))["status"] == "succeeded"

    await assert_eventually(ended_succeeded)
    result = ok(await cli("restart", workflow_id, "--by", "ops"))
    new = result.stdout.strip()
    assert new.startswith("wf-") and new != workflow_id
    assert result.stderr.strip() == f"restarted {workflow_id} as {new}"

    async def new_run_succeeded() -> dict[str, object]:
        view = await status_of(cli, new)
        assert view["status"] == "succeeded", view
        return view

    view = await assert_eventually(new_run_succeeded)
    assert (view["restarted_from"], view["restarted_as"]) == (workflow_id, None)
    old = await status_of(cli, workflow_id)
    assert (old["status"], old["restarted_as"], old["restarted_from"]) == ("succeeded", new, None)
    assert f"restarted from: {workflow_id}" in ok(await cli("status", new)).stdout
    assert f"restarted as: {new}" in ok(await cli("status", workflow_id)).stdout
    history = json.loads(ok(await cli("history", new, "--json")).stdout)
    assert history[0]["data"]["inputs"] == {"who": "moon"}  # the same inputs
    as_json = json.loads(ok(await cli("restart", workflow_id, "--json")).stdout)
    assert as_json["command"] == "restart" and as_json["restarted_as"] not in (new, None)


def instance_fails_or_hangs(state: JobState) -> Outcome:
    """t-0 fails for good, t-2 hangs (until the test completes it), the others greet."""
    if state.job == "t-0":
        return Outcome(error="t-0 broke", retryable=False)
    if state.job == "t-2":
        return Outcome(hang=True)
    return Outcome(outputs={"greeting": f"hello from {state.job}"})


async def test_skip_one_fan_out_instance_fills_its_slot_and_the_fan_out_succeeds(
    cli: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    path = tmp_path / "fan.yaml"
    path.write_text(
        "name: fan\n"
        "inputs: {items: {type: string}}\n"
        "jobs:\n"
        "  t: {for_each: '${{ fromJSON(inputs.items) }}', fail_fast: false, run: echo}\n"
        "  after: {needs: [t], run: 'echo ${{ needs.t.outputs.greeting }}'}\n"
    )
    cli.runner.behaviour = instance_fails_or_hangs
    workflow_id = await started(cli, path, "-i", 'items=["a","b","c"]')
    await assert_eventually(lambda: cli.runner.hanging, message="t-2 never started")

    async def t0_failed() -> bool:
        jobs = (await status_of(cli, workflow_id))["jobs"]
        return isinstance(jobs, dict) and jobs["t-0"]["status"] == "failed"

    await assert_eventually(t0_failed)
    failed(await cli("skip", workflow_id, "t-2"), "job 't-2' is running")
    failed(await cli("skip", workflow_id, "t-3"), "job 't' has 3 instances (t-0 to t-2), no 't-3'")
    result = ok(await cli("skip", workflow_id, "t-0", "-o", "greeting=skipped", "--json"))
    assert json.loads(result.stdout)["changed"] is True
    _, name, epoch = cli.runner.hanging[0]
    await cli.runner.complete(workflow_id, name, epoch, greeting="late")

    async def succeeded() -> dict[str, object] | None:
        view = await status_of(cli, workflow_id)
        return view if view["status"] == "succeeded" else None

    view = await assert_eventually(succeeded, message="the workflow did not succeed")
    jobs = view["jobs"]
    assert isinstance(jobs, dict)
    assert jobs["t-0"]["status"] == "skipped" and jobs["t-0"]["reason"].startswith("skipped by")
    assert jobs["t"]["status"] == "succeeded"
    assert json.loads(jobs["t"]["outputs"]["greeting"]) == ["skipped", "hello from t-1", "late"]
