"""Whole workflows through the engine on a real nats-server, with the in-test runner."""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter

import orjson
import pytest
from nats.aio.client import Client as NATS

from actors.job import JobState
from events import subjects
from events.dead_letters import list_dead_letters
from events.store import EventStore
from tests.engine_harness import (
    InTestRunner,
    Outcome,
    RecordingDispatcher,
    cancel_workflow,
    ended,
    job_status,
    running_engine,
    start_workflow,
    succeed,
    types,
)
from tests.eventually import assert_eventually

DIAMOND = {
    "name": "diamond",
    "inputs": {"who": {"default": "world"}},
    "jobs": {
        "a": {"run": "echo a"},
        "b": {"needs": ["a"], "run": "echo ${{ needs.a.outputs.greeting }} ${{ inputs.who }}"},
        "c": {"needs": ["a"], "run": "echo c"},
        "d": {"needs": ["b", "c"], "run": "echo d"},
    },
}


@pytest.fixture
async def rig(clean_nats: NATS) -> tuple[NATS, EventStore, RecordingDispatcher]:
    return clean_nats, EventStore(clean_nats), RecordingDispatcher()


async def finished(store: EventStore, wf: str, timeout: float = 15) -> list:
    async def probe() -> list | None:
        history = await store.history(wf)
        return history if ended(history) else None

    return await assert_eventually(probe, timeout=timeout, message=f"workflow {wf} never ended")


async def test_a_dag_runs_to_success_with_outputs_downstream(rig) -> None:
    nc, store, dispatcher = rig

    def behaviour(state: JobState) -> Outcome:
        return Outcome(outputs={"greeting": "hello"} if state.job == "a" else {})

    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, behaviour).start()
    try:
        await start_workflow(nc, "wf-diamond", DIAMOND, inputs={"who": "jetwork"})
        history = await finished(store, "wf-diamond")
    finally:
        await runner.stop()
        await engine.stop()
    assert ended(history) == "WorkflowSucceeded"
    order = [name for (_, name, _) in runner.ran]
    assert order[0] == "a"
    assert order[-1] == "d"
    assert set(order) == {"a", "b", "c", "d"}
    queued_b = next(r.event for r in history if types([r]) == ["job.b.JobQueued"])
    assert queued_b.spec.run == "echo hello jetwork"
    assert queued_b.spec.upstream_outputs == {"a": {"greeting": "hello"}}
    assert types(history)[0] == "wf.WorkflowStarted"
    assert types(history)[-1] == "wf.WorkflowSucceeded"


async def test_a_start_sent_as_plain_json_is_answered_on_its_reply_subject(rig) -> None:
    nc, _, dispatcher = rig
    answers: asyncio.Queue[dict] = asyncio.Queue()

    async def collect(msg) -> None:
        await answers.put(orjson.loads(msg.data))

    await nc.subscribe("answers.lang", cb=collect)
    engine = await running_engine(nc, dispatcher)
    good = {"name": "one", "jobs": {"a": {"run": "true"}}}
    bad = {"name": "bad", "jobs": {"a": {"run": "true", "needs": ["ghost"]}}}
    try:
        for sent, (wf, definition) in enumerate(
            [("wf-json", good), ("wf-json", good), ("wf-bad", bad)], start=1
        ):
            body = {"type": "start", "workflow_id": wf, "definition": definition,
                    "reply_to": "answers.lang"}  # fmt: skip
            # What any NATS client can send: JSON on cmd.<p>.start.<wf>, p = crc32(wf) % 16
            # (no msg id: not de-duplicated).
            partition = zlib.crc32(wf.encode()) % 16
            await nc.jetstream().publish(f"cmd.{partition}.start.{wf}", orjson.dumps(body))
            await assert_eventually(
                lambda sent=sent: answers.qsize() == sent, message=f"no answer for {wf}"
            )
        first, again, refused = [answers.get_nowait() for _ in range(3)]
    finally:
        await engine.stop()
    assert first == {"workflow_id": "wf-json", "accepted": True, "created": True, "error": None}
    assert again == {"workflow_id": "wf-json", "accepted": True, "created": False, "error": None}
    assert refused["workflow_id"] == "wf-bad"
    assert refused["accepted"] is False
    assert refused["error"].startswith("invalid workflow wf-bad: 1 problem(s)")
    assert "jobs.a.needs" in refused["error"]
    assert "ghost" in refused["error"]


async def test_retries_with_backoff_run_on_durable_timers(rig) -> None:
    nc, store, dispatcher = rig
    failures = Counter[str]()

    def behaviour(state: JobState) -> Outcome:
        if state.attempt < 3:
            failures[state.job] += 1
            return Outcome(error=f"boom {state.attempt}")
        return Outcome()

    definition = {
        "name": "flaky",
        "jobs": {
            "j": {"run": "x", "retry": {"max_attempts": 3, "backoff": "fixed", "delay": "1s"}}
        },
    }
    # No in-process timers: the retries wait for their durable schedules alone.
    engine = await running_engine(nc, dispatcher, in_process_horizon=0)
    runner = InTestRunner(store, dispatcher, behaviour).start()
    try:
        await start_workflow(nc, "wf-flaky", definition)
        history = await finished(store, "wf-flaky", timeout=20)
    finally:
        await runner.stop()
        await engine.stop()
    assert ended(history) == "WorkflowSucceeded"
    assert failures["j"] == 2
    kinds = [t.split(".")[-1] for t in types(history) if t.startswith("job.j.")]
    assert kinds.count("JobRetryScheduled") == 2
    assert kinds.count("JobStarted") == 3
    assert kinds[-1] == "JobSucceeded"
    # The requeue came from the timer, not before the backoff elapsed.
    retry = next(r for r in history if r.event.event_type == "JobRetryScheduled")
    requeue = next(r for r in history if r.event.event_type == "JobQueued" and r.event.attempt == 2)
    assert requeue.time >= retry.event.not_before


async def test_a_200ms_backoff_waits_about_200ms(rig) -> None:
    nc, store, dispatcher = rig

    def behaviour(state: JobState) -> Outcome:
        return Outcome(error="boom") if state.attempt < 4 else Outcome()

    definition = {
        "name": "quick",
        "jobs": {"j": {"run": "x", "retry": {"max_attempts": 4, "delay": "200ms"}}},
    }
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, behaviour).start()
    try:
        await start_workflow(nc, "wf-quick", definition)
        history = await finished(store, "wf-quick")
    finally:
        await runner.stop()
        await engine.stop()
    assert ended(history) == "WorkflowSucceeded"
    due = {r.event.attempt: r.event.not_before for r in history
           if r.event.event_type == "JobRetryScheduled"}  # fmt: skip
    queued = {r.event.attempt: r.event.queued_at for r in history
              if r.event.event_type == "JobQueued" and r.event.attempt > 1}  # fmt: skip
    assert sorted(due) == sorted(queued) == [2, 3, 4]
    waits = {n: (queued[n] - due[n]).total_seconds() for n in due}
    # Never early; late by the time the engine takes to act, not by a rounding to whole
    # seconds (0-1 s) plus the server's 250 ms scheduler tick as before. A generous bound.
    assert all(0 <= late < 0.3 for late in waits.values()), waits


async def test_exhausted_retries_fail_the_workflow_and_skip_downstream(rig) -> None:
    nc, store, dispatcher = rig
    definition = {
        "name": "doomed",
        "jobs": {
            "a": {"run": "x", "retry": {"max_attempts": 2}},
            "b": {"needs": ["a"], "run": "y"},
            "cleanup": {"needs": ["a"], "if": "${{ always() }}", "run": "z"},
        },
    }
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(
        store, dispatcher, lambda s: Outcome(error="nope") if s.job == "a" else Outcome()
    ).start()
    try:
        await start_workflow(nc, "wf-doomed", definition)
        history = await finished(store, "wf-doomed")
    finally:
        await runner.stop()
        await engine.stop()
    assert ended(history) == "WorkflowFailed"
    assert job_status(history, "a").value == "failed"
    assert job_status(history, "b").value == "skipped"
    assert job_status(history, "cleanup").value == "succeeded"


async def test_workflow_timeout_fires_from_a_durable_timer(rig) -> None:
    nc, store, dispatcher = rig
    definition = {"name": "slow", "timeout": "1s", "jobs": {"forever": {"run": "sleep 600"}}}
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, lambda s: Outcome(hang=True)).start()
    try:
        await start_workflow(nc, "wf-slow", definition)
        history = await finished(store, "wf-slow")

        # The end is recorded first, the cancellation it causes right after.
        async def stop_requested() -> list | None:
            found = await store.history("wf-slow")
            return found if "job.forever.JobCancelRequested" in types(found) else None

        history = await assert_eventually(stop_requested)
    finally:
        await runner.stop()
        await engine.stop()
    failed = next(r.event for r in history if r.event.event_type == "WorkflowFailed")
    assert "timed out after 1s" in failed.reason
    assert types(history).index("wf.WorkflowFailed") < types(history).index(
        "job.forever.JobCancelRequested"
    )


async def test_cancel_withdraws_queued_and_stops_running_jobs(rig) -> None:
    nc, store, dispatcher = rig
    definition = {
        "name": "cancellable",
        "jobs": {"long": {"run": "sleep 60"}, "later": {"needs": ["long"], "run": "echo"}},
    }
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, lambda s: Outcome(hang=True)).start()
    try:
        await start_workflow(nc, "wf-cancel", definition)
        await assert_eventually(lambda: runner.hanging, message="job never started")
        await cancel_workflow(nc, "wf-cancel", reason="user changed their mind")

        async def cancel_requested() -> bool:
            return "job.long.JobCancelRequested" in types(await store.history("wf-cancel"))

        await assert_eventually(cancel_requested)
        wf, name, epoch = runner.hanging[0]
        await runner.confirm_cancelled(wf, name, epoch)
        history = await finished(store, "wf-cancel")
    finally:
        await runner.stop()
        await engine.stop()
    assert ended(history) == "WorkflowCancelled"
    assert job_status(history, "long").value == "cancelled"
    assert job_status(history, "later").value == "cancelled"


async def test_starting_twice_with_the_same_id_starts_once(rig) -> None:
    nc, store, dispatcher = rig
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, succeed).start()
    try:
        definition = {"name": "once", "jobs": {"only": {"run": "true"}}}
        await start_workflow(nc, "wf-once", definition, idempotency_key="k1")
        await start_workflow(nc, "wf-once", definition, idempotency_key="k1", inputs={})
        history = await finished(store, "wf-once")
        await start_workflow(nc, "wf-once", definition)  # long after: still the same workflow
        await assert_eventually(lambda: dispatcher.queue.empty())
    finally:
        await runner.stop()
        await engine.stop()
    history = await store.history("wf-once")
    assert types(history).count("wf.WorkflowStarted") == 1
    assert types(history).count("job.only.JobStarted") == 1


async def test_bad_commands_are_dead_lettered_and_the_engine_keeps_going(rig) -> None:
    nc, store, dispatcher = rig
    js = nc.jetstream()
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, succeed).start()
    try:
        await js.publish(subjects.command("start", "garbage"), b"\x00not json")
        await js.publish(subjects.command("start", "x"), b'{"type": "launch", "workflow_id": "x"}')
        invalid = {
            "name": "bad",
            "jobs": {"a": {"run": "x", "needs": ["nope"]}, "b": {"run": "y", "timeout": "soon"}},
        }
        await start_workflow(nc, "wf-invalid", invalid)
        await cancel_workflow(nc, "wf-never-started")
        await start_workflow(nc, "wf-fine", {"name": "fine", "jobs": {"a": {"run": "true"}}})
        history = await finished(store, "wf-fine")
        assert ended(history) == "WorkflowSucceeded"
        letters = await assert_eventually(
            lambda: _letters_when(nc, 4), message="expected four dead letters"
        )
    finally:
        await runner.stop()
        await engine.stop()
    reasons = "\n".join(letter.reason for letter in letters)
    assert "malformed command" in reasons
    assert "jobs.a.needs[0]: unknown job 'nope'" in reasons
    assert "jobs.b.timeout" in reasons
    assert "workflow 'wf-never-started' not found" in reasons
    assert await store.history("wf-invalid") == []


async def _letters_when(nc: NATS, count: int) -> list | None:
    letters = await list_dead_letters(nc)
    return letters if len(letters) >= count else None


async def test_garbage_on_an_event_subject_does_not_stop_the_workflow(rig) -> None:
    nc, store, dispatcher = rig
    engine = await running_engine(nc, dispatcher)
    runner = InTestRunner(store, dispatcher, succeed).start()
    try:
        garbage = subjects.job_event("wf-junk", "a", "JobSucceeded")
        await nc.jetstream().publish(garbage, b"{broken")
        definition = {
            "name": "junk",
            "jobs": {"a": {"run": "true"}, "b": {"needs": ["a"], "run": "true"}},
        }
        await start_workflow(nc, "wf-junk", definition)
        await assert_eventually(lambda: _letters_when(nc, 1))

        async def succeeded() -> bool:
            raw = await store.read_raw(subjects.workflow_events("wf-junk"))
            ended = subjects.workflow_event("wf-junk", "WorkflowSucceeded")
            return ended in [m.subject for m in raw]

        await assert_eventually(succeeded, message="the workflow never finished past the garbage")
    finally:
        await runner.stop()
        await engine.stop()
    letters = await list_dead_letters(nc)
    assert any(garbage == letter.subject for letter in letters)


async def test_an_engine_killed_mid_run_is_replaced_and_nothing_is_done_twice(rig) -> None:
    nc, store, dispatcher = rig
    jobs = {
        f"j{i}": {"run": "true", "needs": [f"j{i - 1}"]} if i else {"run": "true"} for i in range(6)
    }
    definition = {"name": "chain", "jobs": jobs}
    first = await running_engine(nc, dispatcher)
    gate = asyncio.Event()

    def behaviour(state: JobState) -> Outcome:
        return Outcome()

    runner = InTestRunner(store, dispatcher, behaviour).start()
    try:
        for n in range(5):
            await start_workflow(nc, f"wf-crash-{n}", definition)

        async def some_progress() -> bool:
            return len(runner.ran) >= 5

        await assert_eventually(some_progress)
        await first.abandon()  # no ack for what it held: JetStream redelivers after ack_wait
        second = await running_engine(nc, dispatcher)
        histories = [await finished(store, f"wf-crash-{n}", timeout=30) for n in range(5)]
        gate.set()
    finally:
        await runner.stop()
        await second.stop()
    for history in histories:
        assert ended(history) == "WorkflowSucceeded"
        kinds = types(history)
        for i in range(6):
            assert kinds.count(f"job.j{i}.JobSucceeded") == 1
            assert kinds.count(f"job.j{i}.JobQueued") == 1


async def test_racing_engines_keep_every_workflow_consistent(rig) -> None:
    nc, store, dispatcher = rig
    # Three engines share the partitions, balancing as they join: a partition changes owner
    # while its workflows run, and every append stays conditional on its actor.
    engines = [await running_engine(nc, dispatcher, batch=2) for _ in range(3)]
    runner = InTestRunner(store, dispatcher, succeed).start()
    fan = {"root": {"run": "true"}}
    fan |= {f"leaf{i}": {"run": "true", "needs": ["root"]} for i in range(8)}
    fan |= {"join": {"run": "true", "needs": [f"leaf{i}" for i in range(8)]}}
    try:
        for n in range(6):
            await start_workflow(nc, f"wf-race-{n}", {"name": "fan", "jobs": fan})
        histories = [await finished(store, f"wf-race-{n}", timeout=30) for n in range(6)]
    finally:
        await runner.stop()
        for engine in engines:
            await engine.stop()
    for history in histories:
        assert ended(history) == "WorkflowSucceeded"
        kinds = types(history)
        assert sum(k.startswith("wf.Workflow") and k != "wf.WorkflowStarted" for k in kinds) == 1
        for name in fan:
            assert kinds.count(f"job.{name}.JobQueued") == 1
            assert kinds.count(f"job.{name}.JobSucceeded") == 1
