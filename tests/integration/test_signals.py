"""Signals end to end: ``wait_for: {signal}`` jobs on a real engine and nats-server, signals from
``sdk.Client`` and plain NATS, the in-test runner standing in for workers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from nats.aio.client import Client as NATS

from events.catalog import JobFailed, JobQueued, JobSucceeded, SignalReceived
from events.errors import CommandRefused, WorkflowNotFound
from events.requests import SignalRequest
from events.store import EventStore
from sdk.client import Client
from tests.engine_harness import (
    InTestRunner,
    RecordingDispatcher,
    start_workflow,
    succeed,
    types,
)
from tests.integration.test_control import Rig


def approval(timeout: str | None = "1h") -> dict[str, object]:
    wait: dict[str, object] = {"signal": "approve"}
    if timeout is not None:
        wait["timeout"] = timeout
    return {
        "name": "approval",
        "jobs": {
            "build": {"run": "echo build"},
            "approve": {"needs": ["build"], "wait_for": wait},
            "deploy": {"needs": ["approve"], "run": "deploy ${{ needs.approve.outputs.by }}"},
        },
    }


@pytest.fixture
async def rig(clean_nats: NATS) -> AsyncIterator[Rig]:
    rig = Rig(clean_nats, EventStore(clean_nats), RecordingDispatcher(), Client(clean_nats))
    await rig.start(succeed)
    try:
        yield rig
    finally:
        if rig.runner is not None:
            await rig.runner.stop()
        if rig.engine is not None:
            await rig.engine.stop()
        await rig.client.close()


async def test_a_signal_after_the_wait_started_resumes_the_job_with_its_data(rig: Rig) -> None:
    wf = "wf-sig-after"
    await start_workflow(rig.nc, wf, approval())
    await rig.until(wf, "job.approve.JobWaiting")
    view = await rig.client.status(wf)
    assert view.jobs["approve"].status == "waiting"
    assert view.jobs["approve"].wait is not None and view.jobs["approve"].wait.signal == "approve"
    sent = await rig.client.signal(wf, "approve", {"by": "ann", "ok": True}, "s-1", by="ann")
    assert (sent.applied, sent.changed) == (True, True)
    history = await rig.until(wf, "wf.WorkflowSucceeded")
    kinds = types(history)
    assert kinds.index("job.approve.JobWaiting") < kinds.index("wf.SignalReceived")
    assert kinds.index("wf.SignalConsumed") < kinds.index("job.approve.JobSucceeded")
    done = next(
        r.event for r in history if isinstance(r.event, JobSucceeded) and r.event.job == "approve"
    )
    assert done.outputs == {"by": "ann", "ok": "true"}
    deploy = next(
        r.event for r in history if isinstance(r.event, JobQueued) and r.event.job == "deploy"
    )
    assert deploy.spec.run == "deploy ann"
    # A retried send of the same id changes nothing, even once the workflow has ended.
    again = await rig.client.signal(wf, "approve", {"by": "ann"}, "s-1")
    assert (again.applied, again.changed) == (True, False)
    assert types(await rig.history(wf)).count("wf.SignalReceived") == 1


async def test_a_signal_before_the_wait_is_kept_until_the_wait_starts(rig: Rig) -> None:
    assert rig.runner is not None
    await rig.runner.stop()  # build waits for a worker: the signal comes first
    rig.runner = None
    wf = "wf-sig-before"
    await start_workflow(rig.nc, wf, approval())
    await rig.until(wf, "job.build.JobQueued")
    sent = await rig.client.signal(wf, "approve", {"by": "bob"}, "early")
    assert sent.applied and sent.changed
    await rig.until(wf, "wf.SignalReceived")
    assert "job.approve.JobWaiting" not in types(await rig.history(wf))
    rig.runner = InTestRunner(rig.store, rig.dispatcher, succeed).start()
    history = await rig.until(wf, "wf.WorkflowSucceeded")
    kinds = types(history)
    assert kinds.index("wf.SignalReceived") < kinds.index("job.approve.JobWaiting")
    assert kinds.index("job.approve.JobWaiting") < kinds.index("job.approve.JobSucceeded")


async def test_signals_to_ended_unknown_or_unwaited_workflows_are_refused(rig: Rig) -> None:
    wf = "wf-sig-refused"
    await start_workflow(rig.nc, wf, approval())
    await rig.until(wf, "job.approve.JobWaiting")
    with pytest.raises(CommandRefused, match="no job of it waits for signal 'aprove'"):
        await rig.client.signal(wf, "aprove", {})
    await rig.client.cancel(wf)
    await rig.until(wf, "wf.WorkflowCancelled")
    with pytest.raises(
        CommandRefused, match="cannot signal workflow 'wf-sig-refused': it has ended"
    ):
        await rig.client.signal(wf, "approve", {})
    with pytest.raises(WorkflowNotFound, match="not found"):
        await rig.client.signal("wf-nobody", "approve", {}, answer_timeout=10)
    assert "wf.SignalReceived" not in types(await rig.history(wf))


async def test_a_cancel_withdraws_a_waiting_job(rig: Rig) -> None:
    wf = "wf-sig-cancel"
    await start_workflow(rig.nc, wf, approval())
    await rig.until(wf, "job.approve.JobWaiting")
    await rig.client.cancel(wf, reason="not today")
    history = await rig.until(wf, "wf.WorkflowCancelled", "job.approve.JobCancelled")
    assert "job.deploy.JobQueued" not in types(history)


async def test_the_wait_times_out_durably_across_an_engine_restart(rig: Rig) -> None:
    wf = "wf-sig-timeout"
    await start_workflow(rig.nc, wf, approval(timeout="2s"))
    await rig.until(wf, "job.approve.JobWaiting")
    await rig.restart_engine()  # the in-process timer goes with the engine; the durable one stays
    history = await rig.until(wf, "wf.WorkflowFailed", timeout=20)
    failed = next(r.event for r in history if isinstance(r.event, JobFailed))
    assert failed.timed_out and "no signal 'approve' arrived within 2s" in failed.error
    assert "job.deploy.JobQueued" not in types(history)


async def test_a_plain_nats_signal_reaches_a_workflow_waiting_across_an_engine_restart(
    rig: Rig,
) -> None:
    wf = "wf-sig-nats"
    await start_workflow(rig.nc, wf, approval(timeout=None))
    await rig.until(wf, "job.approve.JobWaiting")
    await rig.restart_engine()
    inbox = rig.nc.new_inbox()
    answers = await rig.nc.subscribe(inbox, max_msgs=1)
    request = SignalRequest(
        workflow_id=wf, name="approve", data={"by": "curl"}, signal_id="n-1", reply_to=inbox
    )
    await rig.nc.jetstream().publish(
        f"cmd.{request.subject().split('.')[1]}.signal.{wf}",
        orjson.dumps({k: v for k, v in request.model_dump().items() if v is not None}),
        headers={"Nats-Msg-Id": f"signal.{wf}.n-1"},
    )
    answer = orjson.loads((await answers.next_msg(timeout=10)).data)
    assert answer == {
        "workflow_id": wf,
        "command": "signal",
        "accepted": True,
        "changed": True,
        "error": None,
    }
    history = await rig.until(wf, "wf.WorkflowSucceeded")
    signal = next(r.event for r in history if isinstance(r.event, SignalReceived))
    assert (signal.signal_id, signal.data) == ("n-1", {"by": "curl"})

    view = await rig.client.status(wf)
    assert view.status == "succeeded" and view.jobs["approve"].outputs == {"by": "curl"}


async def test_a_webhook_wait_survives_an_engine_restart_and_times_out_or_resumes(
    rig: Rig,
) -> None:
    definition = {
        "name": "pay",
        "jobs": {
            "paid": {"wait_for": {"webhook": {"match": {"type": "paid"}}, "timeout": "2s"}},
            "late": {"wait_for": {"webhook": {"match": {"type": "paid"}}, "timeout": "2s"}},
        },
    }
    wf = "wf-hook"
    await start_workflow(rig.nc, wf, definition)
    await rig.until(wf, "job.paid.JobWaiting", "job.late.JobWaiting")
    await rig.restart_engine()
    with pytest.raises(CommandRefused, match='the body does not match: type is "refund"'):
        await rig.client.deliver_hook(wf, "paid", 1, {"type": "refund"})
    done = await rig.client.deliver_hook(wf, "paid", 1, {"type": "paid", "n": 1})
    assert done.applied and done.changed
    history = await rig.until(wf, "wf.WorkflowFailed", "job.paid.JobSucceeded", timeout=20)
    failed = next(r.event for r in history if isinstance(r.event, JobFailed))
    assert (failed.job, failed.timed_out) == ("late", True)
    assert "no matching webhook request arrived within 2s" in failed.error
