"""Golden event histories: recorded once, frozen, replayed through ``evolve`` on every run.

Each ``tests/golden/<name>.json`` holds a workflow's whole history as it would sit in the
stream, and the state it must fold to. A history in the log is a fact forever: when the schema
or the actors change, these files must still decode and fold to the same states. Never edit one
to make a test pass; add a new scenario instead. ``JW_REGENERATE_GOLDEN=1`` rewrites them from
the scenarios below (only for a new file or a deliberate, reviewed change).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from actors import job, signals, subworkflows, workflow
from actors.commands import (
    Advance,
    ClaimJob,
    CompleteJob,
    HookWorkflow,
    ParkJob,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
    SkipJob,
    UnparkJob,
)
from actors.definitions import parse_workflow
from actors.definitions.mapping import definition_mapping
from actors.workflow import WorkflowState
from events import codec
from events.catalog import JobEvent
from events.definition import (
    AtLeast,
    Backoff,
    InputSpec,
    JobDefinition,
    LoopSpec,
    OnFailure,
    RetryPolicy,
    WaitFor,
    WebhookWait,
    WorkflowDefinition,
)
from events.http_step import HttpStep
from events.requests import ChildEndedRequest
from tests.unit.fanout_simulation import FanOutSimulation
from tests.unit.golden import GOLDEN, load_golden
from tests.unit.simulation import Simulation


def _definition(name: str, jobs: dict[str, dict[str, Any]], **extra: Any) -> WorkflowDefinition:
    return WorkflowDefinition(
        name=name,
        jobs={n: JobDefinition(name=n, **{"run": f"./{n}.sh", **kw}) for n, kw in jobs.items()},
        **extra,
    )


def release() -> Simulation:
    """The issue's example: a retried build, templated test, failing lint (continue), notify."""
    definition = _definition(
        "release",
        {
            "build": {
                "run": 'make build && echo "::set-output artifact=dist/app-${{ inputs.version }}"',
                "labels": ("linux",),
                "timeout": 600,
                "retry": RetryPolicy(
                    max_attempts=3, backoff=Backoff.EXPONENTIAL, delay=1, max_delay=30
                ),
            },
            "test": {
                "needs": ("build",),
                "run": "./test.sh ${{ needs.build.outputs.artifact }}",
                "env": {"ARTIFACT": "${{ needs.build.outputs.artifact }}"},
            },
            "lint": {"needs": ("build",), "on_failure": OnFailure.CONTINUE},
            "notify": {"needs_any": ("test", "lint"), "if": "${{ always() }}", "delay": 5},
        },
        inputs={"version": InputSpec(default="0.1.0")},
        env={"REGION": "eu"},
        timeout=1800,
    )
    sim = Simulation(workflow_id="wf-release")
    sim.start(definition, version="1.2.3")
    sim.run({"build": ["fail", {"artifact": "dist/app-1.2.3"}], "lint": ["fatal"]})
    return sim


def skip_chain() -> Simulation:
    """A permanent failure at the top of a chain: the rest is skipped, cleanup still runs."""
    definition = _definition(
        "chain",
        {
            "fetch": {},
            "build": {"needs": ("fetch",)},
            "package": {"needs": ("build",)},
            "cleanup": {"needs": ("package",), "if": "always()"},
        },
    )
    sim = Simulation(workflow_id="wf-chain")
    sim.start(definition)
    sim.run({"fetch": ["fatal"]})
    return sim


def fenced() -> Simulation:
    """w1's lease expires mid-job; w2 gets the redelivery and finishes; w1's late result is
    rejected; a second report by w2 adds nothing."""
    sim = Simulation(workflow_id="wf-fenced")
    sim.start(_definition("fenced", {"work": {}, "after": {"needs": ("work",)}}))
    sim.advance()
    sim.claim("work", worker="w1")
    sim.tick(31)
    sim.claim("work", worker="w2", delivery=2)
    sim.tick(5)
    sim.job("work", CompleteJob, epoch=1, worker_id="w1", outputs={"by": "w1"})
    sim.job("work", CompleteJob, epoch=2, worker_id="w2", outputs={"by": "w2"})
    sim.job("work", CompleteJob, epoch=2, worker_id="w2", outputs={"by": "w2"})
    sim.run()
    return sim


def cancelled() -> Simulation:
    """Cancelled mid-run: a running job asked to stop, a queued one withdrawn, cleanup runs."""
    definition = _definition(
        "cancel",
        {
            "long": {},
            "waiting": {"delay": 3600},
            "next": {"needs": ("long",)},
            "cleanup": {"needs": ("long",), "if": "always()"},
        },
    )
    sim = Simulation(workflow_id="wf-cancel")
    sim.start(definition)
    sim.advance()
    sim.claim("long")
    sim.tick(10)
    sim.cancel("operator asked")
    sim.advance()
    sim.tick(1)
    sim.stop("long")
    sim.run()
    return sim


def timed_out() -> Simulation:
    """The workflow's timeout fires while a job runs; its worker's late success is recorded."""
    sim = Simulation(workflow_id="wf-timeout")
    sim.start(_definition("slow", {"slow": {}, "after": {"needs": ("slow",)}}, timeout=60))
    sim.advance()
    epoch = sim.claim("slow")
    sim.clock = 60
    sim.timeout()
    sim.advance()
    sim.tick(2)
    sim.job("slow", CompleteJob, epoch=epoch, worker_id="w1")
    sim.advance()
    return sim


def operated() -> Simulation:
    """An operator's day: paused while fetch runs (its result is recorded, nothing is queued),
    the delayed lint skipped with an output, resumed; package fails for good, the workflow is
    retried and package runs again as attempt 2 (fetch, lint and build keep their results)."""
    definition = _definition(
        "operated",
        {
            "fetch": {},
            "lint": {"delay": 3600},
            "build": {"needs": ("fetch", "lint"), "run": "./build.sh ${{ needs.lint.outputs.r }}"},
            "package": {"needs": ("build",)},
        },
    )
    sim = Simulation(workflow_id="wf-operated")
    sim.start(definition)
    sim.advance()
    sim.claim("fetch")
    sim.tick(1)
    sim.decide(PauseWorkflow(**sim.ids, by="ops", reason="look", request_id="r1", now=sim.now))
    sim.tick(1)
    sim.finish("fetch", "ok")
    sim.advance()
    sim.decide(SkipJob(**sim.ids, job="lint", by="ops", outputs={"r": "none"}, now=sim.now))
    sim.advance()
    sim.tick(1)
    sim.decide(ResumeWorkflow(**sim.ids, by="ops", request_id="r2", now=sim.now))
    sim.run({"package": ["fatal"]})
    sim.tick(60)
    sim.decide(RetryWorkflow(**sim.ids, by="ops", reason="fixed", request_id="r3", now=sim.now))
    sim.run()
    return sim


def signalled() -> Simulation:
    """Waiting for the outside world: the signal approve, sent while build runs, is kept and
    taken when approve starts waiting; paid waits for a webhook (its match rendered from the
    inputs) and a matching body resumes it; confirm waits for a signal that never comes and
    times out (on_failure: continue); deploy runs with the approver's name."""
    jobs = {
        "build": JobDefinition(name="build", run="./build.sh"),
        "approve": JobDefinition(
            name="approve", needs=("build",), wait_for=WaitFor(signal="approve", timeout=3600)
        ),
        "paid": JobDefinition(
            name="paid",
            wait_for=WaitFor(webhook=WebhookWait(match={"order": "${{ inputs.order }}"})),
        ),
        "confirm": JobDefinition(
            name="confirm",
            wait_for=WaitFor(signal="confirm", timeout=60),
            on_failure=OnFailure.CONTINUE,
        ),
        "deploy": JobDefinition(
            name="deploy",
            needs=("approve", "paid"),
            run="./deploy.sh ${{ needs.approve.outputs.by }}",
        ),
    }
    definition = WorkflowDefinition(
        name="signalled", inputs={"order": InputSpec(default="A-7")}, jobs=jobs
    )
    sim = Simulation(workflow_id="wf-signalled")
    sim.start(definition)
    sim.advance()
    sim.claim("build")
    sim.tick(1)
    approve = {"name": "approve", "data": {"by": "ann"}, "signal_id": "s1"}
    sim.decide(SignalWorkflow(**sim.ids, by="ann", **approve, now=sim.now))
    sim.finish("build", "ok")
    sim.advance()
    sim.record(signals.resolve(sim.state, sim.now))
    body = {"order": "A-7", "amount": 12}
    sim.decide(HookWorkflow(**sim.ids, by="webhook", job="paid", attempt=1, body=body, now=sim.now))
    sim.tick(60)
    sim.record(signals.time_out(sim.state, "confirm", 1, sim.now))
    sim.run()
    return sim


def parked() -> Simulation:
    """An http step, and a handler that returned InProgress twice (parked, queued again with its
    progress after each callback) before it succeeded; then the job that needs both."""
    step = HttpStep(url="https://api.example.com/orders", method="POST", expect_status=(201,))
    definition = _definition(
        "parked",
        {
            "call": {"run": None, "http": step},
            "remote": {"run": None, "uses": "transcode"},
            "after": {"needs": ("call", "remote")},
        },
    )
    sim = Simulation(workflow_id="wf-parked")
    sim.start(definition)
    sim.advance()
    sim.claim("call", worker="http-steps-1")
    sim.finish("call", {"status": "201", "body": '{"id": 7}'})
    for poll in (1, 2):
        epoch = sim.claim("remote")
        sim.job("remote", ParkJob, epoch=epoch, worker_id="w1", callback_after=30,
                outputs={"step": str(poll)})  # fmt: skip
        sim.tick(30)
        sim.job("remote", UnparkJob, attempt=1, poll_count=poll)
    sim.claim("remote")
    sim.finish("remote", {"done": "yes"})
    sim.run()
    return sim


def looped() -> Simulation:
    """A loop job polled until its outputs say done: iteration 1 not done, iteration 2 fails
    once and is retried (its own budget), iteration 3 done; then its dependent runs."""
    definition = _definition(
        "looped",
        {
            "poll": {
                "run": "./poll.sh ${{ loop.iteration }}",
                "retry": RetryPolicy(max_attempts=2),
                "loop": LoopSpec(until="outputs.done == 'true'", max_iterations=5),
            },
            "after": {"needs": ("poll",), "run": "./after.sh ${{ needs.poll.outputs.n }}"},
        },
        outputs={"n": "${{ needs.poll.outputs.n }}"},
    )
    sim = Simulation(workflow_id="wf-looped")
    sim.start(definition)
    sim.run(
        {
            "poll": [
                {"done": "false", "n": "1"},
                "fail",
                {"done": "false", "n": "2"},
                {"done": "true", "n": "3"},
            ]
        }
    )
    return sim


def fanned_out() -> Simulation:
    """A for_each over a job's output (two at a time, one instance retried) and a matrix, both
    gathered downstream; then a fail_fast fan-out that fails and stops its sibling."""
    definition = parse_workflow(
        {
            "name": "fanned",
            "jobs": {
                "list": {"run": "./list.sh"},
                "each": {
                    "needs": ["list"],
                    "for_each": "${{ fromJSON(needs.list.outputs.items) }}",
                    "max_parallel": 2,
                    "retry": 2,
                    "run": "./each.sh ${{ item.file }} ${{ index }}",
                },
                "mx": {
                    "strategy": {"matrix": {"os": ["linux", "mac"]}, "fail_fast": False},
                    "labels": ["${{ matrix.os }}"],
                    "run": "./test.sh ${{ matrix.os }}",
                },
                "gather": {
                    "needs": ["each", "mx"],
                    "run": "./gather.sh '${{ needs.each.outputs.rows }}'",
                },
                "strict": {"needs": ["gather"], "for_each": [1, 2, 3], "run": "./strict.sh"},
            },
        }
    )
    sim = FanOutSimulation(workflow_id="wf-fanned")
    sim.start(definition)
    items = '[{"file": "a.csv"}, {"file": "b.csv"}, {"file": "c.csv"}]'
    sim.run(
        {
            "list": [{"items": items}],
            "each-0": [{"rows": "10"}],
            "each-1": ["fail", {"rows": "20"}],
            "each-2": [{"rows": "30"}],
            "strict-0": ["fatal"],
            "strict-1": ["hang"],
        }
    )
    return sim


def fan_out_skipped() -> Simulation:
    """An operator skips one fan-out instance that failed (with an output for its slot) and one
    before its turn (max_parallel 2); the fan-out succeeds with both slots filled by hand."""
    definition = parse_workflow(
        {
            "name": "skipped",
            "jobs": {
                "each": {
                    "for_each": [1, 2, 3, 4],
                    "max_parallel": 2,
                    "fail_fast": False,
                    "run": "./each.sh ${{ item }}",
                },
                "gather": {"needs": ["each"], "run": "./gather.sh '${{ needs.each.outputs.v }}'"},
            },
        }
    )
    sim = FanOutSimulation(workflow_id="wf-skipped")
    sim.start(definition)
    sim.advance()
    sim.claim("each-0")
    sim.finish("each-0", "fatal")
    sim.tick(1)
    sim.decide(SkipJob(**sim.ids, job="each-0", by="ops", outputs={"v": "none"}, now=sim.now))
    sim.decide(SkipJob(**sim.ids, job="each-3", by="ops", now=sim.now))
    sim.run({"each-1": [{"v": "two"}], "each-2": [{"v": "three"}]})
    return sim


def sub_workflow() -> Simulation:
    """A parent's workflow job: its first child run fails, the retry's second child succeeds and
    its outputs flow to the job, the dependent and the parent's outputs."""
    child = _definition("child", {"work": {}}, outputs={"out": "${{ needs.work.outputs.out }}"})
    definition = _definition(
        "parent",
        {
            "sub": {"run": None, "workflow": "./child.yaml", "retry": RetryPolicy(max_attempts=2)},
            "after": {"needs": ("sub",), "run": "./after.sh ${{ needs.sub.outputs.out }}"},
        },
        workflows={"./child.yaml": child},
        outputs={"out": "${{ needs.sub.outputs.out }}"},
    )
    sim = Simulation(workflow_id="wf-parent")
    sim.start(definition)
    sim.advance()
    for attempt, status, outputs in ((1, "failed", {}), (2, "succeeded", {"out": "42"})):
        sim.tick(5)
        notice = ChildEndedRequest(
            workflow_id="wf-parent",
            job="sub",
            attempt=attempt,
            child_id=sim.state.job("sub").child_id or "",
            status=status,  # type: ignore[arg-type]
            reason="1 job(s) failed: work" if status == "failed" else None,
            outputs=outputs,
        )
        sim.record(subworkflows.settle(sim.state, notice, sim.now))
        sim.run()
    return sim


def steps() -> Simulation:
    """Steps without a worker and an n-of-m join: meta's outputs computed from expressions, a
    10-minute sleep ended by its timer, publish run once 2 of 3 mirrors succeeded while the third
    still ran (it fails later, on_failure: continue), the workflow's outputs on its end."""
    definition = WorkflowDefinition(
        name="steps",
        inputs={"version": InputSpec(default="1.0")},
        outputs={"tag": "${{ needs.meta.outputs.tag }}", "seen": "${{ needs.publish.outputs.n }}"},
        jobs={
            "meta": JobDefinition(name="meta", set_={"tag": "v${{ inputs.version }}"}),
            "pause": JobDefinition(name="pause", needs=("meta",), sleep=600),
            **{
                name: JobDefinition(
                    name=name, run=f"./{name}.sh", needs=("pause",), on_failure=OnFailure.CONTINUE
                )
                for name in ("a", "b", "c")
            },
            "publish": JobDefinition(
                name="publish",
                run="./publish.sh ${{ needs.a.result }}",
                needs_at_least=AtLeast(count=2, of=("a", "b", "c")),
            ),
        },
    )
    sim = Simulation(workflow_id="wf-steps")
    sim.start(definition, version="2.0")
    sim.run({"c": ["hang"], "publish": [{"n": "2"}]})  # publish runs while c still runs
    sim.tick(5)
    sim.finish("c", "fatal")
    sim.run()
    return sim


def fanned_children() -> Simulation:
    """A fan-out of sub-workflows: one child per item, the first instance's child fails and its
    retry's child succeeds; the children's outputs are gathered for the dependent."""
    child = _definition("child", {"work": {}}, outputs={"out": "${{ needs.work.outputs.out }}"})
    definition = parse_workflow(
        {
            "name": "fanned-children",
            "jobs": {
                "sub": {
                    "for_each": ["ann", "bo"],
                    "workflow": "./child.yaml",
                    "with": {"who": "${{ item }}"},
                    "retry": 2,
                },
                "after": {"needs": ["sub"], "run": "./after.sh '${{ needs.sub.outputs.out }}'"},
            },
            "workflows": {"./child.yaml": {**definition_mapping(child), "inputs": {"who": {}}}},
        }
    )
    sim = FanOutSimulation(workflow_id="wf-fanned-children")
    sim.start(definition)
    sim.advance()

    def ended(job: str, status: str, outputs: dict[str, str] | None = None) -> None:
        sim.tick(5)
        current = sim.state.job(job)
        notice = ChildEndedRequest(
            workflow_id="wf-fanned-children",
            job=job,
            attempt=current.attempt,
            child_id=current.child_id or "",
            status=status,  # type: ignore[arg-type]
            reason="1 job(s) failed: work" if status == "failed" else None,
            outputs=outputs or {},
        )
        sim.record(subworkflows.settle(sim.state, notice, sim.now))
        sim.run()

    ended("sub-0", "failed")
    ended("sub-1", "succeeded", {"out": "bo!"})
    ended("sub-0", "succeeded", {"out": "ann!"})
    return sim


def fanned_waits() -> Simulation:
    """A fan-out of waits: each instance waits for the signal its item names; approve-us comes
    first, approve-eu second; the dependent runs with both approvers."""
    definition = parse_workflow(
        {
            "name": "fanned-waits",
            "jobs": {
                "approve": {
                    "for_each": ["eu", "us"],
                    "wait_for": {"signal": "approve-${{ item }}", "timeout": "1h"},
                },
                "deploy": {"needs": ["approve"], "run": "./deploy.sh"},
            },
        }
    )
    sim = FanOutSimulation(workflow_id="wf-fanned-waits")
    sim.start(definition)
    sim.advance()
    for region, by in (("us", "bo"), ("eu", "ann")):
        sim.tick(1)
        sent = {"name": f"approve-{region}", "data": {"by": by}, "signal_id": region}
        sim.decide(SignalWorkflow(**sim.ids, by=by, **sent, now=sim.now))
        sim.record(signals.resolve(sim.state, sim.now))
        sim.run()
    return sim


def fanned_loops() -> Simulation:
    """A fan-out of loops: poll-0 needs two iterations, poll-1 one; the job fans in once both
    loops have ended."""
    definition = parse_workflow(
        {
            "name": "fanned-loops",
            "jobs": {
                "poll": {
                    "for_each": ["a", "bb"],
                    "loop": {"until": "outputs.done == 'true'", "max_iterations": 3},
                    "run": "./poll.sh ${{ item }} ${{ loop.iteration }}",
                },
                "after": {"needs": ["poll"], "run": "./after.sh"},
            },
        }
    )
    sim = FanOutSimulation(workflow_id="wf-fanned-loops")
    sim.start(definition)
    sim.run({"poll-0": [{"done": "false"}, {"done": "true"}], "poll-1": [{"done": "true"}]})
    return sim


SCENARIOS: dict[str, Callable[[], Simulation]] = {
    "fanned_children": fanned_children,
    "fanned_waits": fanned_waits,
    "fanned_loops": fanned_loops,
    "looped": looped,
    "sub_workflow": sub_workflow,
    "fanned_out": fanned_out,
    "fan_out_skipped": fan_out_skipped,
    "parked": parked,
    "operated": operated,
    "signalled": signalled,
    "release": release,
    "skip_chain": skip_chain,
    "fenced": fenced,
    "cancelled": cancelled,
    "timed_out": timed_out,
    "steps": steps,
}


def _summary(state: WorkflowState) -> dict[str, Any]:
    return {
        "status": state.status,
        "end_reason": state.end_reason,
        "cancel_reason": state.cancel_reason,
        "last_seq": state.last_seq,
        "stream_seq": state.stream_seq,
        "jobs": {
            name: {
                "status": j.status,
                "attempt": j.attempt,
                "epoch": j.epoch,
                "worker_id": j.worker_id,
                "outputs": dict(j.outputs),
                "error": j.error,
                "rejections": j.rejections,
                "last_seq": j.last_seq,
            }
            for name, j in sorted(state.jobs.items())
        },
    }


def _write(name: str, sim: Simulation) -> None:
    document = {
        "description": (SCENARIOS[name].__doc__ or "").strip(),
        "workflow_id": sim.workflow_id,
        "events": [
            {
                "seq": r.seq,
                "subject": r.subject,
                "time": r.time.isoformat(),
                "event": orjson.loads(codec.encode(r.event)),
            }
            for r in sim.log
        ],
        "expected": _summary(sim.state),
    }
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (GOLDEN / f"{name}.json").write_bytes(data + b"\n")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_history_replays_to_its_recorded_state(name: str) -> None:
    if os.environ.get("JW_REGENERATE_GOLDEN") == "1":
        _write(name, SCENARIOS[name]())
    recorded, expected = load_golden(name)
    state = workflow.replay(recorded)
    assert orjson.loads(orjson.dumps(_summary(state))) == expected
    assert all(r.subject == r.event.subject() for r in recorded if hasattr(r.event, "subject"))

    # Folding one event at a time with evolve agrees with replay.
    folded = WorkflowState(workflow_id=state.workflow_id)
    for r in recorded:
        folded = workflow.evolve(folded, r.event)
    assert {n: j.status for n, j in folded.jobs.items()} == {
        n: j.status for n, j in state.jobs.items()
    }
    assert (folded.status, folded.end_reason) == (state.status, state.end_reason)

    # Each job actor folded from its own subject alone agrees with the whole-history fold.
    for name_, job_state in state.jobs.items():
        own = [r for r in recorded if isinstance(r.event, JobEvent) and r.event.job == name_]
        if own:
            assert job.replay(own) == job_state

    # A complete history leaves an engine that restarts on it nothing to do.
    assert (
        workflow.decide(state, Advance(workflow_id=state.workflow_id, now=recorded[-1].time)) == []
    )


def test_a_golden_history_still_fences_a_stale_claim() -> None:
    recorded, _ = load_golden("fenced")
    state = workflow.replay(recorded).job("work")
    stale = ClaimJob(
        workflow_id="wf-fenced",
        job="work",
        attempt=1,
        worker_id="w1",
        delivery=1,
        dispatch_seq=1,
        lease_ttl=30,
        now=recorded[-1].time,
    )
    with pytest.raises(job.ClaimRefused):
        job.decide(state, stale)
