"""Pause, resume, skip and retry end to end: ``sdk.Client`` and plain NATS requests to a real
engine on a real nats-server, the in-test runner standing in for workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine
from actors.job import JobState
from events import subjects
from events.base import RecordedEvent
from events.catalog import JobQueued, JobSkipped, WorkflowPaused, WorkflowRetried
from events.dead_letters import list_dead_letters
from events.errors import CommandRefused
from events.requests import PauseRequest
from events.store import EventStore
from sdk.client import Client
from sdk.errors import JobNotFound
from tests.engine_harness import (
    InTestRunner,
    Outcome,
    RecordingDispatcher,
    running_engine,
    start_workflow,
    types,
)
from tests.eventually import assert_eventually

CHAIN = {
    "name": "chain",
    "jobs": {
        "a": {"run": "echo a"},
        "b": {"needs": ["a"], "run": "echo b ${{ needs.a.outputs.v }}"},
        "c": {"needs": ["b"], "run": "echo c"},
    },
}


@dataclass
class Rig:
    nc: NATS
    store: EventStore
    dispatcher: RecordingDispatcher
    client: Client
    engine: Engine | None = None
    runner: InTestRunner | None = None

    async def start(self, behaviour: object) -> None:
        self.engine = await running_engine(self.nc, self.dispatcher)
        self.runner = InTestRunner(self.store, self.dispatcher, behaviour).start()  # type: ignore[arg-type]

    async def restart_engine(self) -> None:
        assert self.engine is not None
        await self.engine.stop()
        self.engine = await running_engine(self.nc, self.dispatcher)

    async def history(self, wf: str) -> list[RecordedEvent]:
        return await self.store.history(wf)

    async def until(self, wf: str, *wanted: str, timeout: float = 15) -> list[RecordedEvent]:
        """The history once it holds each of ``wanted`` (``job.a.JobSucceeded``, ``wf.…``)."""

        async def probe() -> list[RecordedEvent]:
            history = await self.history(wf)
            missing = [kind for kind in wanted if kind not in types(history)]
            assert not missing, f"{wf} has no {missing} yet: {types(history)}"
            return history

        return await assert_eventually(probe, timeout=timeout)

    async def decided_on(self, wf: str, seq: int) -> None:
        """Wait until the engine owning ``wf`` has decided on the event at ``seq`` (it
        acknowledges an event only after what it caused is stored)."""
        durable = f"engine-p{subjects.partition_of(wf)}-evt"

        async def probe() -> bool:
            info = await self.nc.jetstream().consumer_info(subjects.EVENTS_STREAM, durable)
            assert info.ack_floor is not None and info.ack_floor.stream_seq >= seq, info.ack_floor
            return info.num_ack_pending == 0

        await assert_eventually(probe, timeout=15)


@pytest.fixture
async def rig(clean_nats: NATS) -> AsyncIterator[Rig]:
    rig = Rig(clean_nats, EventStore(clean_nats), RecordingDispatcher(), Client(clean_nats))
    try:
        yield rig
    finally:
        if rig.runner is not None:
            await rig.runner.stop()
        if rig.engine is not None:
            await rig.engine.stop()
        await rig.client.close()


def a_hangs(state: JobState) -> Outcome:
    return Outcome(hang=state.job == "a")


def seq_of(history: list[RecordedEvent], kind: str) -> int:
    return next(r.seq for r in history if types([r]) == [kind])


async def test_a_pause_survives_an_engine_restart_and_the_resume_continues(rig: Rig) -> None:
    await rig.start(a_hangs)
    wf = "wf-pause"
    await start_workflow(rig.nc, wf, CHAIN)
    await assert_eventually(lambda: rig.runner is not None and rig.runner.hanging)
    paused = await rig.client.pause(wf, reason="look first", by="ops")
    assert (paused.applied, paused.changed) == (True, True)
    view = await rig.client.status(wf)
    assert (view.status, view.reason) == ("paused", "paused by ops: look first")

    # The engine goes; a's worker finishes meanwhile; another engine takes the workflow.
    assert rig.engine is not None
    await rig.engine.stop()
    rig.engine = None
    assert rig.runner is not None
    [(_, _, epoch)] = rig.runner.hanging
    await rig.runner.complete(wf, "a", epoch, v="7")
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    history = await rig.until(wf, "job.a.JobSucceeded")
    await rig.decided_on(wf, seq_of(history, "job.a.JobSucceeded"))
    # a's result is recorded; nothing is queued while paused.
    history = await rig.history(wf)
    assert "job.b.JobQueued" not in types(history)
    assert (await rig.client.status(wf)).status == "paused"

    resumed = await rig.client.resume(wf, by="ops")
    assert resumed.applied and resumed.changed
    history = await rig.until(wf, "wf.WorkflowSucceeded")
    kinds = types(history)
    assert kinds.index("wf.WorkflowPaused") < kinds.index("job.a.JobSucceeded")
    assert kinds.index("wf.WorkflowResumed") < kinds.index("job.b.JobQueued")
    queued_b = next(r.event for r in history if types([r]) == ["job.b.JobQueued"])
    assert isinstance(queued_b, JobQueued) and queued_b.spec.run == "echo b 7"
    pause_event = next(r.event for r in history if isinstance(r.event, WorkflowPaused))
    assert (pause_event.by, pause_event.reason) == ("ops", "look first")


async def test_a_retry_falling_due_while_paused_waits_for_the_resume(rig: Rig) -> None:
    definition = {
        "name": "retrying",
        "jobs": {"a": {"run": "flaky", "retry": {"max_attempts": 2, "delay": "300ms"}}},
    }

    def first_attempt_hangs(state: JobState) -> Outcome:
        return Outcome(hang=state.attempt == 1)

    await rig.start(first_attempt_hangs)
    wf = "wf-retry-paused"
    await start_workflow(rig.nc, wf, definition)
    await assert_eventually(lambda: rig.runner is not None and rig.runner.hanging)
    await rig.client.pause(wf)
    assert rig.runner is not None
    [(_, _, epoch)] = rig.runner.hanging
    await rig.runner.fail(wf, "a", epoch)  # retryable: attempt 2 is due 300 ms later
    await rig.until(wf, "job.a.JobRetryScheduled")
    timer = subjects.timer_set(subjects.partition_of(wf), f"{wf}.a.retry-a2")
    js = rig.nc.jetstream()
    commands = f"engine-p{subjects.partition_of(wf)}-cmd"

    async def timer_fired_and_handled() -> bool:
        info = await js.stream_info(subjects.COMMANDS_STREAM, subjects_filter=timer)
        assert not info.state.subjects, f"the retry's schedule has not fired: {info.state}"
        consumer = await js.consumer_info(subjects.COMMANDS_STREAM, commands)
        return consumer.num_pending == 0 and consumer.num_ack_pending == 0

    await assert_eventually(timer_fired_and_handled, timeout=15)
    queued = [r.event for r in await rig.history(wf) if isinstance(r.event, JobQueued)]
    assert [event.attempt for event in queued] == [1]  # the retry waits while paused
    await rig.client.resume(wf)
    history = await rig.until(wf, "wf.WorkflowSucceeded")
    queued = [r.event for r in history if isinstance(r.event, JobQueued)]
    assert [event.attempt for event in queued] == [1, 2]
    kinds = types(history)
    assert kinds.index("wf.WorkflowResumed") < kinds.index("job.a.JobQueued", 2)


async def test_pausing_an_ended_workflow_and_resuming_a_running_one_are_refused(rig: Rig) -> None:
    await rig.start(a_hangs)
    await start_workflow(rig.nc, "wf-r", CHAIN)
    await rig.until("wf-r", "job.a.JobQueued")
    with pytest.raises(CommandRefused, match="it is not paused \\(it is running\\)"):
        await rig.client.resume("wf-r")
    await rig.client.cancel("wf-r")
    await rig.until("wf-r", "wf.WorkflowCancelRequested")
    with pytest.raises(CommandRefused, match="cannot pause workflow 'wf-r'"):
        await rig.client.pause("wf-r")


async def test_a_plain_nats_request_the_engine_refuses_is_answered_and_dead_lettered(
    rig: Rig,
) -> None:
    await rig.start(lambda state: Outcome())
    await start_workflow(rig.nc, "wf-done", {"name": "one", "jobs": {"a": {"run": "true"}}})
    await rig.until("wf-done", "wf.WorkflowSucceeded")
    inbox = rig.nc.new_inbox()
    answers = await rig.nc.subscribe(inbox, max_msgs=1)
    request = PauseRequest(workflow_id="wf-done", by="script", reply_to=inbox)
    # What any NATS client sends (docs/architecture.md, "Commands from any language").
    await rig.nc.jetstream().publish(
        f"cmd.{subjects.partition_of('wf-done')}.pause.wf-done", request.model_dump_json().encode()
    )
    answer = orjson.loads((await answers.next_msg(timeout=10)).data)
    assert answer == {
        "workflow_id": "wf-done",
        "command": "pause",
        "accepted": False,
        "changed": False,
        "error": "cannot pause workflow 'wf-done': it has ended (succeeded)",
    }
    letters = await assert_eventually(lambda: list_dead_letters(rig.nc))
    assert "it has ended (succeeded)" in letters[-1].reason
    assert "wf.WorkflowPaused" not in types(await rig.history("wf-done"))


async def test_a_skipped_job_s_dependents_run_with_the_outputs_given(rig: Rig) -> None:
    definition = {
        "name": "skip",
        "jobs": {
            "a": {"run": "echo a", "delay": "1h"},  # queued, claimable in an hour
            "b": {"needs": ["a"], "run": "echo ${{ needs.a.result }} ${{ needs.a.outputs.v }}"},
        },
    }
    await rig.start(lambda state: Outcome())
    await start_workflow(rig.nc, "wf-skip", definition)
    await rig.until("wf-skip", "job.a.JobQueued")
    with pytest.raises(JobNotFound, match="has no job 'zz'"):
        await rig.client.skip("wf-skip", "zz")
    skipped = await rig.client.skip("wf-skip", "a", outputs={"v": "7"}, reason="no time", by="ops")
    assert skipped.applied and skipped.changed
    history = await rig.until("wf-skip", "wf.WorkflowSucceeded")
    event = next(r.event for r in history if isinstance(r.event, JobSkipped))
    assert (event.by, event.outputs, event.reason) == ("ops", {"v": "7"}, "skipped by ops: no time")
    queued_b = next(r.event for r in history if types([r]) == ["job.b.JobQueued"])
    assert isinstance(queued_b, JobQueued) and queued_b.spec.run == "echo success 7"
    view = await rig.client.status("wf-skip")
    assert (view.jobs["a"].status, view.jobs["a"].outputs) == ("skipped", {"v": "7"})
    with pytest.raises(CommandRefused, match="it has ended \\(succeeded\\)"):
        await rig.client.skip("wf-skip", "b")


def b_fails_once(state: JobState) -> Outcome:
    if state.job == "b" and state.attempt == 1:
        return Outcome(error="credentials expired", retryable=False)
    return Outcome(outputs={"v": "1"} if state.job == "a" else {})


async def test_a_retried_workflow_runs_its_failed_job_and_what_was_skipped_again(
    rig: Rig,
) -> None:
    await rig.start(b_fails_once)
    await start_workflow(rig.nc, "wf-retry", CHAIN)
    history = await rig.until("wf-retry", "wf.WorkflowFailed")
    assert "job.c.JobSkipped" in types(history)
    with pytest.raises(CommandRefused, match="cannot pause workflow 'wf-retry': it has ended"):
        await rig.client.pause("wf-retry")
    retried = await rig.client.retry("wf-retry", reason="credentials fixed", by="ops")
    assert retried.applied and retried.changed
    history = await rig.until("wf-retry", "wf.WorkflowSucceeded")
    event = next(r.event for r in history if isinstance(r.event, WorkflowRetried))
    assert (event.jobs, event.by) == (("b", "c"), "ops")
    assert rig.runner is not None
    ran = [(name, attempt) for (wf, name, attempt) in rig.runner.ran if wf == "wf-retry"]
    assert ran == [("a", 1), ("b", 1), ("b", 2), ("c", 1)]  # a kept its result
    view = await rig.client.status("wf-retry")
    assert view.status == "succeeded"
    assert (view.jobs["a"].attempts, view.jobs["a"].outputs) == (1, {"v": "1"})
    assert view.jobs["b"].attempts == 2
    with pytest.raises(CommandRefused, match="it succeeded; only a failed or cancelled"):
        await rig.client.retry("wf-retry")


async def test_a_retry_sent_while_no_engine_runs_is_applied_when_one_is_back(rig: Rig) -> None:
    await rig.start(b_fails_once)
    await start_workflow(rig.nc, "wf-later", CHAIN)
    await rig.until("wf-later", "wf.WorkflowFailed")
    assert rig.engine is not None
    await rig.engine.stop()
    rig.engine = None
    stored = await rig.client.retry("wf-later", answer_timeout=0.2)
    assert (stored.applied, stored.changed) == (False, False)  # stored, nobody answered
    assert "wf.WorkflowRetried" not in types(await rig.history("wf-later"))
    rig.engine = await running_engine(rig.nc, rig.dispatcher)
    await rig.until("wf-later", "wf.WorkflowRetried")
    # Waiting and following go past the first end, which a retry followed, to the second.
    assert (await rig.client.wait("wf-later", timeout=15)).status == "succeeded"
    views = [view async for view in rig.client.follow("wf-later")]
    assert [v.status for v in views].count("failed") == 1 and views[-1].status == "succeeded"
    history = await rig.history("wf-later")
    assert types(history).count("job.b.JobQueued") == 2
