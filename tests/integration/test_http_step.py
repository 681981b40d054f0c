"""The ``http:`` step end to end: the real engine, jetwork server's built-in http worker, a real
HTTP server on loopback, and a shell worker for the jobs that read the step's outputs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine, EngineSettings
from events.base import RecordedEvent
from events.codec import encode
from events.store import EventStore
from sdk.worker import Worker
from sdk.worker.http_steps import http_step_worker
from tests.engine_harness import ended, start_workflow
from tests.eventually import assert_eventually
from tests.http_target import Target, serving
from tests.jobs_harness import fast_config

SECRET = "s3cr3t-value-never-in-the-log"
FAST = {"lease_ttl": 2.0, "heartbeat_interval": 0.5, "poll_interval": 0.25}


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running = Engine(clean_nats, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def target() -> Iterator[Target]:
    with serving(Target(secret=SECRET)) as serving_target:
        yield serving_target


@pytest.fixture
async def shell(nats_url: str) -> AsyncIterator[Worker]:
    worker = Worker(fast_config(nats_url, worker_id="w-shell"))
    await worker.start()
    yield worker
    await worker.stop()


async def http_worker(nats_url: str, **environ: str) -> Worker:
    worker = http_step_worker(nats_url, {"API_TOKEN": SECRET, **environ}, **FAST)
    await worker.start()
    return worker


async def finished(nc: NATS, wf: str, timeout: float = 30) -> list[RecordedEvent]:
    store = EventStore(nc)

    async def probe() -> list[RecordedEvent] | None:
        history = await store.history(wf)
        return history if ended(history) else None

    found: list[RecordedEvent] = await assert_eventually(
        probe, timeout=timeout, message=f"workflow {wf} never ended"
    )
    return found


def ends(history: list[RecordedEvent], job: str) -> list[Any]:
    return [
        r.event
        for r in history
        if getattr(r.event, "job", None) == job
        and r.event.event_type in ("JobSucceeded", "JobFailed")
    ]


async def test_a_request_with_a_secret_header_feeds_the_next_job(
    clean_nats: NATS, nats_url: str, engine: Engine, target: Target, shell: Worker
) -> None:
    definition = {
        "name": "http-chain",
        "inputs": {"order": {"default": "o-7"}},
        "jobs": {
            "create": {
                "http": {
                    "url": f"{target.url}/echo",
                    "method": "POST",
                    "headers": {"Authorization": "Bearer ${{ secrets.API_TOKEN }}"},
                    "body": {"order": "${{ inputs.order }}"},
                    "expect_status": [200, 201],
                }
            },
            "show": {
                "needs": ["create"],
                "run": "echo ::set-output state=${{ fromJSON(needs.create.outputs.body).state }}"
                "; echo ::set-output order=${{ fromJSON(needs.create.outputs.body).got.order }}"
                "; echo ::set-output auth=${{ fromJSON(needs.create.outputs.body).authorized }}",
            },
        },
    }
    worker = await http_worker(nats_url)
    try:
        await start_workflow(clean_nats, "wf-http-chain", definition)
        history = await finished(clean_nats, "wf-http-chain")
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowSucceeded"
    [created] = ends(history, "create")
    assert created.outputs["status"] == "201"
    assert created.worker_id == worker.worker_id
    [shown] = ends(history, "show")
    assert shown.outputs == {"state": "done", "order": "o-7", "auth": "true"}
    assert not any(SECRET.encode() in encode(r.event) for r in history)


async def test_an_unexpected_status_fails_the_job_with_the_answer(
    clean_nats: NATS, nats_url: str, engine: Engine, target: Target
) -> None:
    definition = {
        "name": "http-fail",
        "jobs": {
            "call": {
                "http": {"url": f"{target.url}/fail", "expect_status": [200]},
                "retry": {"max_attempts": 2},
            }
        },
    }
    worker = await http_worker(nats_url)
    try:
        await start_workflow(clean_nats, "wf-http-fail", definition)
        history = await finished(clean_nats, "wf-http-fail")
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowFailed"
    failures = ends(history, "call")
    assert [f.will_retry for f in failures] == [True, False]  # the retry policy applies
    assert "GET " in failures[-1].error and "answered 500, expected 200" in failures[-1].error
    assert target.hits["/fail"] == 2


async def test_polling_until_the_remote_job_is_done(
    clean_nats: NATS, nats_url: str, engine: Engine, target: Target
) -> None:
    until = "${{ fromJSON(response.body).state == 'done' }}"
    definition = {
        "name": "http-poll",
        "jobs": {
            "wait": {
                "http": {
                    "url": f"{target.url}/job/42",
                    "poll": {"interval": "100ms", "until": until, "max_polls": 10},
                }
            },
            "too-few": {
                "http": {
                    "url": f"{target.url}/job/43",
                    "poll": {"interval": "100ms", "until": until, "max_polls": 2},
                },
                "on_failure": "continue",
            },
        },
    }
    worker = await http_worker(nats_url)
    try:
        await start_workflow(clean_nats, "wf-http-poll", definition)
        history = await finished(clean_nats, "wf-http-poll")
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowSucceeded"
    [done] = ends(history, "wait")
    assert done.outputs["polls"] == "3"  # running, running, done
    assert target.hits["/job/42"] == 3
    [gave_up] = ends(history, "too-few")
    assert "polled 2 times" in gave_up.error


async def test_between_polls_the_step_is_parked_and_its_slot_serves_another(
    clean_nats: NATS, nats_url: str, engine: Engine, target: Target
) -> None:
    until = "${{ fromJSON(response.body).state == 'done' }}"

    def polling(name: str) -> dict[str, Any]:
        poll = {"interval": "1s", "until": until, "max_polls": 5}
        return {"http": {"url": f"{target.url}/job/{name}", "poll": poll}}

    definition = {"name": "http-park", "jobs": {"a": polling("a"), "b": polling("b")}}
    # One request at a time: a step holding its slot between polls would make the other wait.
    worker = await http_worker(nats_url, JETWORK_HTTP_STEP_CONCURRENCY="1")
    try:
        await start_workflow(clean_nats, "wf-http-park", definition)
        history = await finished(clean_nats, "wf-http-park")
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowSucceeded"
    for name in ("a", "b"):
        kinds = [
            r.event.event_type
            for r in history
            if getattr(r.event, "job", None) == name and r.event.event_type.startswith("Job")
        ]
        assert kinds == ["JobQueued", "JobStarted", "JobParked"] * 2 + [
            "JobQueued",
            "JobStarted",
            "JobSucceeded",
        ]
        [done] = ends(history, name)
        assert done.outputs["polls"] == "3" and done.attempt == 1
    parked = [r.event for r in history if r.event.event_type == "JobParked"]
    assert [p.outputs for p in parked if p.job == "a"] == [
        {"status": "200", "polls": "1"},
        {"status": "200", "polls": "2"},
    ]
    # Each ran while the other was parked: neither finished before the other's first request.
    order = [(r.event.event_type, getattr(r.event, "job", None)) for r in history]
    first_started = min(order.index(("JobStarted", n)) for n in ("a", "b"))
    second_started = max(order.index(("JobStarted", n)) for n in ("a", "b"))
    first_done = min(order.index(("JobSucceeded", n)) for n in ("a", "b"))
    assert first_started < second_started < first_done
    assert target.hits["/job/a"] == target.hits["/job/b"] == 3


async def test_a_host_off_the_allow_list_is_refused(
    clean_nats: NATS, nats_url: str, engine: Engine, target: Target
) -> None:
    definition = {"name": "http-refused", "jobs": {"call": {"http": {"url": f"{target.url}/ok"}}}}
    worker = await http_worker(nats_url, JETWORK_HTTP_STEP_ALLOW="api.example.com,*.example.org")
    try:
        await start_workflow(clean_nats, "wf-http-refused", definition)
        history = await finished(clean_nats, "wf-http-refused")
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowFailed"
    [refused] = ends(history, "call")
    assert refused.error.startswith("host 127.0.0.1 is not allowed for http steps")
    assert not refused.retryable
    assert target.hits["/ok"] == 0


async def test_cancelling_a_workflow_stops_a_request_in_flight(
    clean_nats: NATS, nats_url: str, engine: Engine, target: Target
) -> None:
    from tests.engine_harness import cancel_workflow

    definition = {"name": "http-cancel", "jobs": {"call": {"http": {"url": f"{target.url}/slow"}}}}
    worker = await http_worker(nats_url)
    try:
        await start_workflow(clean_nats, "wf-http-cancel", definition)
        await assert_eventually(
            lambda: target.hits["/slow"] == 1, timeout=10, message="the request never arrived"
        )
        await cancel_workflow(clean_nats, "wf-http-cancel")
        history = await finished(clean_nats, "wf-http-cancel", timeout=15)
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowCancelled"
    assert any(r.event.event_type == "JobCancelled" for r in history)
