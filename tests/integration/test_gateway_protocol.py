"""The worker protocol over real HTTP: claims, leases kept by the log, fencing, results, logs,
cancellation, and a gateway that restarts or is killed between a worker's calls."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import JobResultRejected
from events.dispatch import LabelSet
from events.store import EventStore
from gateway.serve import HttpGateway
from sdk.worker import Worker, group_line
from sdk.worker.consumers import ensure_consumer
from tests.claims import claims
from tests.eventually import assert_eventually
from tests.gateway_harness import (
    claim,
    claim_eventually,
    finished,
    running_engine,
    running_gateway,
    start,
    types_of,
)
from tests.jobs_harness import fast_config


@dataclass
class Stack:
    nc: NATS
    url: str
    gateway: HttpGateway
    http: httpx.AsyncClient
    store: EventStore


@pytest.fixture
async def stack(clean_nats: NATS, nats_url: str) -> AsyncIterator[Stack]:
    async with (
        running_engine(clean_nats),
        running_gateway(nats_url) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        yield Stack(clean_nats, nats_url, gateway, http, EventStore(clean_nats))


async def dispatched(stack: Stack) -> None:
    """Wait until a job is queued (its JobQueued is the dispatch), so a claim that gets none
    was refused it."""

    async def waiting() -> bool:
        return bool(await stack.store.read_raw(subjects.events_of_type("JobQueued")))

    await assert_eventually(waiting)


ONE_JOB = {"name": "one", "jobs": {"only": {"run": "true", "labels": ["http"]}}}


async def test_a_claim_is_null_without_work_and_long_polls_until_a_job_comes(stack: Stack) -> None:
    assert await claim(stack.http, "w1", ["http"]) is None
    waiting = asyncio.create_task(claim(stack.http, "w1", ["http"], wait=20))
    await asyncio.sleep(0.3)  # the claim is waiting when the job is queued
    assert not waiting.done()
    wf = await start(stack.http, ONE_JOB)
    claimed = await asyncio.wait_for(waiting, 20)
    assert claimed["job"]["workflow_id"] == wf
    assert claimed["job"]["job_id"] == "only"


async def test_the_job_and_lease_carry_what_the_seed_names_and_upstream_outputs(
    stack: Stack,
) -> None:
    workflow = {
        "name": "outputs",
        "env": {"STAGE": "test"},
        "jobs": {
            "make": {"run": "make", "labels": ["http"]},
            "use": {
                "needs": ["make"],
                "labels": ["http", "linux"],
                "run": "deploy ${{ needs.make.outputs.version }}",
                "timeout": "30s",
            },
        },
    }
    wf = await start(stack.http, workflow)
    first = await claim_eventually(stack.http, "w1", ["http", "linux"], ttl=20)
    job, lease = first["job"], first["lease"]
    assert (job["job_id"], job["command"], job["required_labels"]) == ("make", "make", ["http"])
    assert (job["attempt"], job["epoch"], job["env"]) == (1, 1, {"STAGE": "test"})
    assert lease["job_id"] == "make" and lease["workflow_id"] == wf
    assert (lease["worker_id"], lease["ttl_secs"]) == ("w1", 20)
    assert lease["granted_at_ms"] > 0 and len(lease["lease_id"]) > 40
    done = await stack.http.post(
        f"/api/jobs/{lease['lease_id']}/complete", json={"outputs": {"version": "1.2.3", "n": 3}}
    )
    assert done.status_code == 200, done.text
    second = await claim_eventually(stack.http, "w1", ["http", "linux"])
    assert second["job"]["command"] == "deploy 1.2.3"
    assert second["job"]["upstream_outputs"] == {"make": {"version": "1.2.3", "n": "3"}}
    assert second["job"]["timeout_secs"] == 30
    await stack.http.post(f"/api/jobs/{second['lease']['lease_id']}/complete", json={})
    history = await finished(stack.store, wf)
    assert types_of(history)[-1] == "WorkflowSucceeded"
    status = (await stack.http.get(f"/api/workflows/{wf}")).json()
    assert status["jobs"]["make"]["outputs"] == {"version": "1.2.3", "n": "3"}
    assert status["jobs"]["make"]["worker_id"] == "w1"


async def test_jobs_go_only_to_workers_whose_labels_cover_theirs(stack: Stack) -> None:
    await start(stack.http, {"name": "gpu", "jobs": {"train": {"run": "t", "labels": ["gpu"]}}})
    await dispatched(stack)
    assert await claim(stack.http, "cpu", ["linux"]) is None
    assert await claim(stack.http, "nolabels") is None
    claimed = await claim_eventually(stack.http, "gpu", ["gpu", "linux"])
    assert claimed["job"]["job_id"] == "train"


async def test_a_vanished_http_worker_loses_its_lease_after_its_ttl_and_late_results_are_rejected(
    stack: Stack,
) -> None:
    wf = await start(stack.http, ONE_JOB)
    first = await claim_eventually(stack.http, "gone", ["http"], ttl=1)
    old = first["lease"]["lease_id"]
    # The first worker stops heartbeating: its lease's expiry fires, another worker takes over.
    second = await claim_eventually(stack.http, "next", ["http"], ttl=30, wait=5)
    assert (second["job"]["job_id"], second["job"]["attempt"]) == ("only", 1)
    assert second["job"]["epoch"] == 2
    heartbeat = await stack.http.post(f"/api/jobs/{old}/heartbeat")
    assert heartbeat.status_code == 409
    assert "epoch 2 holds it now" in heartbeat.json()["error"]
    logs = await stack.http.post(f"/api/jobs/{old}/logs", json={"chunks": [{"data": "late"}]})
    assert logs.status_code == 409
    late = await stack.http.post(f"/api/jobs/{old}/complete", json={"outputs": {"x": "1"}})
    assert late.status_code == 409 and late.json()["code"] == "lease_gone"
    ok = await stack.http.post(f"/api/jobs/{second['lease']['lease_id']}/complete", json={})
    assert ok.status_code == 200, ok.text
    history = await finished(stack.store, wf)
    rejected = [r.event for r in history if isinstance(r.event, JobResultRejected)]
    assert [(e.epoch, e.worker_id, e.outcome) for e in rejected] == [(1, "gone", "succeeded")]
    assert types_of(history, "only").count("JobSucceeded") == 1


async def test_heartbeats_keep_a_lease_longer_than_its_ttl(stack: Stack) -> None:
    wf = await start(stack.http, ONE_JOB)
    held = await claim_eventually(stack.http, "keeper", ["http"], ttl=3)
    lease_id = held["lease"]["lease_id"]
    for _ in range(12):  # 6 s: twice the lease, renewed every half second
        beat = await stack.http.post(f"/api/jobs/{lease_id}/heartbeat")
        assert beat.status_code == 200, beat.text
        assert await claim(stack.http, "thief", ["http"]) is None
        await asyncio.sleep(0.5)
    done = await stack.http.post(f"/api/jobs/{lease_id}/complete", json={})
    assert done.status_code == 200
    history = await finished(stack.store, wf)
    assert [claim.epoch for claim in claims(history)] == [1]


async def test_a_nats_worker_takes_over_an_expired_http_lease(stack: Stack) -> None:
    wf = await start(stack.http, ONE_JOB)
    await claim_eventually(stack.http, "vanishes", ["http"], ttl=1)
    worker = Worker(fast_config(stack.url, worker_id="w-native", labels=frozenset({"http"})))
    await worker.start()
    try:
        history = await finished(stack.store, wf)
    finally:
        await worker.stop()
    started = [(claim.worker_id, claim.epoch) for claim in claims(history)]
    assert started == [("vanishes", 1), ("w-native", 2)]
    assert types_of(history)[-1] == "WorkflowSucceeded"


async def test_retryable_failures_follow_the_retry_policy_and_permanent_ones_do_not(
    stack: Stack,
) -> None:
    retry = {"max_attempts": 3}
    wf = await start(
        stack.http,
        {
            "name": "failures",
            "jobs": {
                "flaky": {"run": "x", "labels": ["http"], "retry": retry},
                "doomed": {"run": "y", "labels": ["doom"], "retry": retry},
            },
        },
    )
    flaky = await claim_eventually(stack.http, "w", ["http"])
    failed = await stack.http.post(
        f"/api/jobs/{flaky['lease']['lease_id']}/fail", json={"error": "boom", "retryable": True}
    )
    assert failed.status_code == 200
    again = await claim_eventually(stack.http, "w", ["http"])
    assert (again["job"]["job_id"], again["job"]["attempt"]) == ("flaky", 2)
    await stack.http.post(f"/api/jobs/{again['lease']['lease_id']}/complete", json={})
    doomed = await claim_eventually(stack.http, "w", ["doom"])
    await stack.http.post(
        f"/api/jobs/{doomed['lease']['lease_id']}/fail",
        json={"error": "bad config", "retryable": False},
    )
    history = await finished(stack.store, wf)
    assert types_of(history)[-1] == "WorkflowFailed"
    assert len(claims(history, "doomed")) == 1  # attempts were left: not retried
    status = (await stack.http.get(f"/api/workflows/{wf}")).json()
    assert status["jobs"]["doomed"]["error"] == "bad config"
    assert status["jobs"]["flaky"]["status"] == "succeeded"


async def test_a_cancelled_job_is_reported_to_its_http_worker_and_its_lease_ends(
    stack: Stack,
) -> None:
    wf = await start(stack.http, ONE_JOB)
    held = await claim_eventually(stack.http, "w", ["http"])
    lease_id = held["lease"]["lease_id"]
    assert (await stack.http.get(f"/api/jobs/{wf}/only/cancelled")).json() is False
    cancel = await stack.http.post(f"/api/workflows/{wf}/cancel", json={"reason": "enough"})
    assert cancel.status_code == 202

    async def told() -> bool:
        return bool((await stack.http.get(f"/api/jobs/{wf}/only/cancelled")).json())

    await assert_eventually(told)
    beat = await stack.http.post(f"/api/jobs/{lease_id}/heartbeat")
    assert beat.status_code == 409 and "cancelled" in beat.json()["error"]
    history = await finished(stack.store, wf)
    assert types_of(history)[-1] == "WorkflowCancelled"
    cancelled = [r.event for r in history if r.event.event_type == "JobCancelled"]
    assert [e.worker_id for e in cancelled] == ["w"]
    unknown = await stack.http.get("/api/jobs/wf-unknown/only/cancelled")
    assert unknown.status_code == 404


async def test_log_pushes_are_read_back_with_the_cli_and_the_api(stack: Stack) -> None:
    wf = await start(stack.http, ONE_JOB)
    held = await claim_eventually(stack.http, "w", ["http"])
    lease_id = held["lease"]["lease_id"]
    chunks = [
        {"workflow_id": wf, "job_id": "only", "sequence": 0, "data": "one\ntwo\n",
         "timestamp_ms": 1_700_000_000_000, "stream": "stdout"},
        {"workflow_id": wf, "job_id": "only", "sequence": 1, "data": "oops", "stream": "stderr"},
    ]  # fmt: skip
    pushed = await stack.http.post(f"/api/jobs/{lease_id}/logs", json={"chunks": chunks})
    assert pushed.json() == {"accepted": 3}
    wrong = [{"workflow_id": "wf-other", "job_id": "only", "data": "x"}]
    refused = await stack.http.post(f"/api/jobs/{lease_id}/logs", json={"chunks": wrong})
    assert refused.status_code == 422 and "wf-other" in refused.json()["error"]
    await stack.http.post(f"/api/jobs/{lease_id}/complete", json={})
    lines = (await stack.http.get(f"/api/workflows/{wf}/jobs/only/logs")).json()["lines"]
    assert [(line["line"], line["stream"], line["attempt"]) for line in lines] == [
        ("one", "stdout", 1),
        ("two", "stdout", 1),
        ("oops", "stderr", 1),
    ]
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sdk.cli", "logs", wf, "only", "--nats", stack.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await cli.communicate()
    # One sequence on stdout, in the order written, stderr marked (issue 17).
    assert out.decode().splitlines() == ["── attempt 1 ──", "one", "two", "[stderr] oops"]
    assert err.decode() == ""


async def test_a_restarted_gateway_serves_the_leases_of_the_one_before(
    stack: Stack, nats_url: str
) -> None:
    wf = await start(stack.http, ONE_JOB)
    held = await claim_eventually(stack.http, "w", ["http"], ttl=30)
    lease_id = held["lease"]["lease_id"]
    await stack.gateway.stop()  # no state of its own: another gateway takes the calls
    async with running_gateway(nats_url) as other, httpx.AsyncClient(base_url=other.url) as http:
        assert (await http.post(f"/api/jobs/{lease_id}/heartbeat")).status_code == 200
        assert (await http.post(f"/api/jobs/{lease_id}/complete", json={})).status_code == 200
    history = await finished(stack.store, wf)
    assert types_of(history)[-1] == "WorkflowSucceeded"


async def test_a_sigkilled_gateway_loses_no_job(clean_nats: NATS, nats_url: str) -> None:
    """A gateway process killed right after a claim: the worker's next call, to a new gateway,
    succeeds; jobs claimed and abandoned with the gateway are re-run after their lease, be it
    kept by a timer (``orphan``) or by the dispatch's ack deadline (``dropped``)."""
    await ensure_consumer(clean_nats, LabelSet.of(["dropped"]), lease_ttl=1)
    env = {**os.environ, "JETWORK_NATS_URL": nats_url}
    store = EventStore(clean_nats)

    async def spawn() -> tuple[asyncio.subprocess.Process, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sdk.cli", "gateway", "--http", "127.0.0.1:0",
            env=env, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        seen = []
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "".join(seen)
            seen.append(line)
            if "HTTP gateway on " in line:
                return proc, line.split("HTTP gateway on ")[1].split()[0]

    async with running_engine(clean_nats):
        first, url = await spawn()
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                wf = await start(http, {"name": "k", "jobs": {
                    "kept": {"run": "a", "labels": ["http"]},
                    "orphan": {"run": "b", "labels": ["orphan"]},
                    "dropped": {"run": "c", "labels": ["dropped"]},
                }})  # fmt: skip
                kept = await claim_eventually(http, "w", ["http"], ttl=30)
                await claim_eventually(http, "lost", ["orphan"], ttl=1)
                await claim_eventually(http, "lost", ["dropped"], ttl=1)
        finally:
            first.send_signal(signal.SIGKILL)
            await first.wait()
        second, url = await spawn()
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                lease_id = kept["lease"]["lease_id"]
                assert (await http.post(f"/api/jobs/{lease_id}/heartbeat")).status_code == 200
                assert (
                    await http.post(f"/api/jobs/{lease_id}/complete", json={})
                ).status_code == 200
                rerun = await claim_eventually(http, "rescuer", ["orphan"], wait=5)
                assert (rerun["job"]["job_id"], rerun["job"]["epoch"]) == ("orphan", 2)
                await http.post(f"/api/jobs/{rerun['lease']['lease_id']}/complete", json={})
                again = await claim_eventually(http, "rescuer", ["dropped"], wait=5)
                assert (again["job"]["job_id"], again["job"]["epoch"]) == ("dropped", 2)
                await http.post(f"/api/jobs/{again['lease']['lease_id']}/complete", json={})
                history = await finished(store, wf)
        finally:
            second.send_signal(signal.SIGTERM)
            await second.wait()
    assert types_of(history)[-1] == "WorkflowSucceeded"


async def test_a_job_timeout_ends_an_http_lease_as_for_any_worker(stack: Stack) -> None:
    """The engine's timeout backstop (``timeout`` + 5 s) fails the attempt; the worker hears 409."""
    wf = await start(
        stack.http,
        {
            "name": "slow",
            "jobs": {"slow": {"run": "sleep 60", "labels": ["http"], "timeout": "1s"}},
        },
    )
    held = await claim_eventually(stack.http, "w", ["http"], ttl=60)
    assert held["job"]["timeout_secs"] == 1
    lease_id = held["lease"]["lease_id"]

    async def lost() -> bool:
        beat = await stack.http.post(f"/api/jobs/{lease_id}/heartbeat")
        return beat.status_code == 409

    await assert_eventually(lost, timeout=20, interval=0.5)
    history = await finished(stack.store, wf)
    failed = [r.event for r in history if r.event.event_type == "JobFailed"]
    assert [e.timed_out for e in failed] == [True]


async def test_http_workers_may_serve_named_handlers(stack: Stack) -> None:
    wf = await start(
        stack.http,
        {"name": "uses", "jobs": {"resize": {"uses": "resize", "with": {"width": 128}}}},
    )
    await dispatched(stack)
    assert await claim(stack.http, "plain", []) is None  # a `uses:` job needs its handler
    held = await claim_eventually(stack.http, "h", [], handlers=["resize"])
    job = held["job"]
    assert (job["command"], job["uses"], job["with"]) == (None, "resize", {"width": 128})
    await stack.http.post(
        f"/api/jobs/{held['lease']['lease_id']}/complete",
        json={"outputs": {"path": "out.png"}, "result": {"path": "out.png", "bytes": 12}},
    )
    history = await finished(stack.store, wf)
    succeeded = next(r.event for r in history if r.event.event_type == "JobSucceeded")
    assert succeeded.result == {"path": "out.png", "bytes": 12}


async def test_http_workers_get_a_job_group_s_waiting_jobs_in_queue_order(stack: Stack) -> None:
    """Across label sets: the job queued second (label ``a``) is served before the third (label
    ``b``), even to a worker that can only run the third."""
    group = f"g-{os.getpid()}-{id(stack)}"

    def one(label: str) -> dict[str, Any]:
        deploy = {"run": "deploy", "labels": [label], "concurrency": {"group": group, "limit": 1}}
        return {"name": "grouped", "jobs": {"deploy": deploy}}

    workflows = []
    for label in ("a", "a", "b"):  # queued one after the other: their JobQueued in this order
        workflows.append(await start(stack.http, one(label)))

        async def queued(wf: str = workflows[-1]) -> bool:
            return "JobQueued" in types_of(await stack.store.history(wf))

        await assert_eventually(queued)
    first = await claim_eventually(stack.http, "wa", ["a"])
    assert first["job"]["workflow_id"] == workflows[0]
    kv = await stack.nc.jetstream().key_value(subjects.KV_CONCURRENCY)

    async def all_waiting() -> bool:
        assert await claim(stack.http, "wa", ["a"]) is None  # the group is full
        assert await claim(stack.http, "wb", ["b"]) is None
        assert len(group_line.decode((await kv.get(group)).value).waiting) == 2
        return True

    await assert_eventually(all_waiting, timeout=20)
    done = await stack.http.post(f"/api/jobs/{first['lease']['lease_id']}/complete", json={})
    assert done.status_code == 200, done.text
    assert await claim(stack.http, "wb", ["b"], wait=3) is None  # the second is owed the slot
    second = await claim_eventually(stack.http, "wa", ["a"])
    assert second["job"]["workflow_id"] == workflows[1]
    done = await stack.http.post(f"/api/jobs/{second['lease']['lease_id']}/complete", json={})
    assert done.status_code == 200, done.text
    third = await claim_eventually(stack.http, "wb", ["b"])
    assert third["job"]["workflow_id"] == workflows[2]
