"""The Worker runtime on a real nats-server: routing, results, retries, cancellation, logs, leases.

Jobs are queued and dispatched by ``tests.jobs_harness`` the way the engine does; every assertion
reads the job actor's events back from the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, NotFoundError
from pydantic import BaseModel

from actors.engine.labelsets import LabelSets
from events import subjects
from events.catalog import (
    JobCancelled,
    JobFailed,
    JobRetryScheduled,
    JobStarted,
    JobSucceeded,
)
from events.connection import NatsSettings, connect
from events.definition import Backoff, RetryPolicy
from events.dispatch import LabelSet
from events.store import ActorRef, EventStore
from sdk.embedded_server import EmbeddedServer
from sdk.worker import Worker
from sdk.worker.handlers import PermanentError
from sdk.worker.job_context import JobContext
from sdk.worker.logs import LogBatch
from sdk.worker.presence import WorkerPresence
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, fast_config, running, unfinished_dispatches


async def settled(harness: JobsHarness, wf: str, job: str, kind: type[Any]) -> Any:
    """Wait for the first event of ``kind`` on the job actor and return it."""

    async def probe() -> Any:
        found = await harness.events(wf, job, kind)
        assert found, f"{job}: {await harness.types(wf, job)}"
        return found[0]

    return await assert_eventually(probe, timeout=15, interval=0.05)


async def jobs_in_queue(nc: NATS) -> int:
    return await unfinished_dispatches(nc)


def process_gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"


# --- routing ------------------------------------------------------------------------------------


async def test_label_routing_with_three_workers(harness: JobsHarness, nats_url: str) -> None:
    workers = {
        "w-linux": Worker(fast_config(nats_url, worker_id="w-linux", labels={"linux"})),
        "w-docker": Worker(fast_config(nats_url, worker_id="w-docker", labels={"linux", "docker"})),
        "w-gpu": Worker(fast_config(nats_url, worker_id="w-gpu", labels={"gpu"})),
    }
    jobs: dict[str, tuple[str, ...]] = {f"lin{i}": ("linux",) for i in range(8)}
    jobs |= {"ld0": ("linux", "docker"), "ld1": ("docker", "linux")}
    jobs |= {"gpu0": ("gpu",), "gpu1": ("gpu",), "any0": (), "any1": (), "any2": ()}
    async with running(*workers.values()):
        for job, labels in jobs.items():
            await harness.queue("wf", job, run="sleep 0.2", labels=labels)
        await harness.queue("wf", "nobody", run="true", labels=("docker", "gpu"))
        ran_on = {job: (await settled(harness, "wf", job, JobSucceeded)).worker_id for job in jobs}
        assert await harness.types("wf", "nobody") == ["JobQueued"]
    for job, labels in jobs.items():
        assert set(labels) <= workers[ran_on[job]].config.labels, (job, ran_on[job])
    linux_runners = {ran_on[f"lin{i}"] for i in range(8)}
    assert linux_runners == {"w-linux", "w-docker"}  # overlapping workers share the work
    assert {ran_on["gpu0"], ran_on["gpu1"]} == {"w-gpu"}


class ResizeIn(BaseModel):
    width: int


class ResizeOut(BaseModel):
    size: str


async def test_uses_jobs_reach_only_workers_with_the_handler(
    harness: JobsHarness, nats_url: str
) -> None:
    plain = Worker(fast_config(nats_url, worker_id="w-plain", labels={"linux"}))
    handy = Worker(fast_config(nats_url, worker_id="w-handy", labels={"linux"}))

    @handy.job("resize")
    async def resize(ctx: JobContext, inp: ResizeIn) -> ResizeOut:
        ctx.log.info("resizing", width=inp.width)
        return ResizeOut(size=f"{inp.width}x{inp.width}")

    assert handy.capabilities == {"linux", "@resize"}
    async with running(plain, handy):
        for i in range(4):
            await harness.queue("wf", f"r{i}", uses="resize", with_={"width": 10 + i})
        for i in range(4):
            done = await settled(harness, "wf", f"r{i}", JobSucceeded)
            assert done.worker_id == "w-handy"
            assert done.outputs == {"size": f"{10 + i}x{10 + i}"}
            assert done.result == {"size": f"{10 + i}x{10 + i}"}


async def test_a_handler_runs_with_its_own_lease_from_the_environment(
    harness: JobsHarness, nats_url: str
) -> None:
    env = {"JETWORK_WORKER_SLOW_LEASE_TTL": "6s", "JETWORK_WORKER_SLOW_HEARTBEAT_INTERVAL": "1s"}
    worker = Worker(fast_config(nats_url), environ=env)

    @worker.job("slow")
    async def slow(ctx: JobContext) -> None:
        ctx.log.info("working")

    async with running(worker):
        await harness.queue("wf", "handled", uses="slow")
        await harness.queue("wf", "shell", run="true")
        handled = await settled(harness, "wf", "handled", JobStarted)
        shell = await settled(harness, "wf", "shell", JobStarted)
        await settled(harness, "wf", "handled", JobSucceeded)
    assert (handled.lease_ttl, shell.lease_ttl) == (6.0, 2.0)
    js = harness.nc.jetstream()
    slow_consumer = await js.consumer_info(subjects.EVENTS_STREAM, LabelSet.of({"@slow"}).consumer)
    any_consumer = await js.consumer_info(subjects.EVENTS_STREAM, LabelSet.of(()).consumer)
    assert (slow_consumer.config.ack_wait, any_consumer.config.ack_wait) == (6.0, 2.0)


async def test_a_handlers_concurrency_is_bounded_within_the_workers(
    harness: JobsHarness, nats_url: str
) -> None:
    env = {"JETWORK_WORKER_ONE_AT_A_TIME_CONCURRENCY": "1"}
    worker = Worker(fast_config(nats_url, max_concurrent_jobs=4), environ=env)
    active: list[str] = []
    peak = 0
    finish: asyncio.Queue[None] = asyncio.Queue()

    @worker.job("one-at-a-time")
    async def one_at_a_time(ctx: JobContext) -> None:
        nonlocal peak
        active.append(ctx.job)
        peak = max(peak, len(active))
        await finish.get()
        active.remove(ctx.job)

    async with running(worker):
        for i in range(3):
            await harness.queue("wf", f"h{i}", uses="one-at-a-time")
        for i in range(2):
            await harness.queue("wf", f"s{i}", run="true")
        for i in range(2):  # the worker's other slots stay free for other jobs
            await settled(harness, "wf", f"s{i}", JobSucceeded)
        for _ in range(3):
            await assert_eventually(lambda: len(active) == 1)
            assert peak == 1
            finish.put_nowait(None)
        for i in range(3):
            await settled(harness, "wf", f"h{i}", JobSucceeded)
    assert peak == 1


# --- results, retries -----------------------------------------------------------------------------


async def test_outputs_flow_to_a_downstream_job(harness: JobsHarness, nats_url: str) -> None:
    async with running(Worker(fast_config(nats_url))):
        await harness.queue("wf", "build", run="echo '::set-output version=1.2'")
        built = await settled(harness, "wf", "build", JobSucceeded)
        await harness.queue(
            "wf",
            "deploy",
            run='printf "::set-output seen=%s\\n" "$JETWORK_UPSTREAM_OUTPUTS"',
            upstream_outputs={"build": built.outputs},
        )
        deployed = await settled(harness, "wf", "deploy", JobSucceeded)
    assert orjson.loads(deployed.outputs["seen"]) == {"build": {"version": "1.2"}}


async def test_a_permanent_error_is_not_retried(harness: JobsHarness, nats_url: str) -> None:
    worker = Worker(fast_config(nats_url))

    @worker.job("check")
    async def check(ctx: JobContext) -> None:
        raise PermanentError("the input file does not exist")

    async with running(worker):
        await harness.queue("wf", "check", uses="check", retry=RetryPolicy(max_attempts=3))
        failed = await settled(harness, "wf", "check", JobFailed)
    assert (failed.retryable, failed.will_retry) == (False, False)
    assert "PermanentError: the input file does not exist" in failed.error
    assert await harness.types("wf", "check") == ["JobQueued", "JobStarted", "JobFailed"]


async def test_a_retryable_error_is_retried_after_its_backoff(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url))

    @worker.job("flaky")
    async def flaky(ctx: JobContext) -> dict[str, str]:
        if ctx.attempt == 1:
            raise ConnectionError("upstream unavailable")
        return {"ok": "yes"}

    retry = RetryPolicy(max_attempts=2, backoff=Backoff.FIXED, delay=1.0)
    async with running(worker):
        await harness.queue("wf", "flaky", uses="flaky", retry=retry)
        failed = await settled(harness, "wf", "flaky", JobFailed)
        scheduled = await settled(harness, "wf", "flaky", JobRetryScheduled)
        assert (failed.will_retry, scheduled.attempt, scheduled.delay) == (True, 2, 1.0)
        requeued = await harness.requeue("wf", "flaky")  # what the engine does
        done = await settled(harness, "wf", "flaky", JobSucceeded)
    started = await harness.events("wf", "flaky", JobStarted)
    assert [(s.attempt, s.epoch) for s in started] == [(1, 1), (2, 2)]
    assert requeued.not_before is not None
    assert started[1].started_at >= requeued.not_before  # not claimable during the backoff
    assert done.attempt == 2 and done.outputs == {"ok": "yes"}


# --- cancellation -----------------------------------------------------------------------------


@pytest.mark.parametrize("notice", [True, False], ids=["pushed", "polled"])
async def test_cancelling_a_running_sleep_ends_it_in_seconds(
    harness: JobsHarness, nats_url: str, tmp_path: Path, notice: bool
) -> None:
    pid_file = tmp_path / "pid"
    async with running(Worker(fast_config(nats_url))):
        await harness.queue("wf", "long", run=f"echo $$ > {pid_file}; exec sleep 60")
        await settled(harness, "wf", "long", JobStarted)
        await assert_eventually(pid_file.exists)
        asked = time.monotonic()
        await harness.cancel("wf", "long", notice=notice)
        cancelled = await settled(harness, "wf", "long", JobCancelled)
        latency = time.monotonic() - asked
        print(f"cancel ({'pushed' if notice else 'polled'}) recorded {latency:.3f}s after request")
        assert await assert_eventually(lambda: process_gone(pid_file))
        await assert_eventually(lambda: _empty(harness.nc))
    assert cancelled.worker_id is not None and cancelled.reason == "cancelled by test"
    assert latency < (1.0 if notice else 2.0), latency
    assert await harness.types("wf", "long") == [
        "JobQueued",
        "JobStarted",
        "JobCancelRequested",
        "JobCancelled",
    ]


# --- logs ---------------------------------------------------------------------------------------


async def test_logs_arrive_in_order(harness: JobsHarness, nats_url: str) -> None:
    script = "for i in $(seq 1 500); do echo line $i; done; echo warning >&2; echo done"
    async with running(Worker(fast_config(nats_url))):
        await harness.queue("wf", "chatty", run=script)
        await settled(harness, "wf", "chatty", JobSucceeded)
    logs = EventStore(harness.nc, stream=subjects.LOGS_STREAM)
    batches = [LogBatch.decode(m.data) for m in await logs.read_raw("log.wf.chatty")]
    chunks = [c for b in batches for c in b.chunks]
    assert {(b.attempt, b.epoch) for b in batches} == {(1, 1)}
    assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
    stdout = [c.line for c in chunks if c.stream == "stdout"]
    assert stdout == [f"line {i}" for i in range(1, 501)] + ["done"]
    assert [c.line for c in chunks if c.stream == "stderr"] == ["warning"]


# --- leases -------------------------------------------------------------------------------------


async def test_a_newer_claim_takes_the_lease_away(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    """Another worker's claim (a JobStarted with a higher epoch) stops this worker's run."""
    pid_file = tmp_path / "pid"
    async with running(Worker(fast_config(nats_url, worker_id="w-old"))):
        await harness.queue("wf", "job", run=f"echo $$ > {pid_file}; exec sleep 60")
        first = await settled(harness, "wf", "job", JobStarted)
        await assert_eventually(pid_file.exists)
        actor = ActorRef.job("wf", "job")
        takeover = first.model_copy(update={"epoch": 2, "worker_id": "w-new", "delivery": 2})
        await harness.store.append(
            actor, [takeover], expected_seq=await harness.store.last_seq(actor), command_id="x"
        )
        assert await assert_eventually(lambda: process_gone(pid_file))
    assert await harness.types("wf", "job") == ["JobQueued", "JobStarted", "JobStarted"]
    assert await jobs_in_queue(harness.nc) == 1  # not acked: the new holder owns the message


async def test_a_job_ended_by_the_engine_is_stopped_and_its_dispatch_acked(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    async with running(Worker(fast_config(nats_url))):
        await harness.queue("wf", "job", run=f"echo $$ > {pid_file}; exec sleep 60", timeout=60)
        await settled(harness, "wf", "job", JobStarted)
        await assert_eventually(pid_file.exists)
        await harness.time_out("wf", "job")  # the engine's timeout timer fired first
        assert await assert_eventually(lambda: process_gone(pid_file))
        await assert_eventually(lambda: _empty(harness.nc))  # nobody else holds the message
    assert await harness.types("wf", "job") == ["JobQueued", "JobStarted", "JobFailed"]


async def test_abort_abandons_the_job_and_another_worker_reruns_it(
    harness: JobsHarness, nats_url: str, tmp_path: Path
) -> None:
    marker, pid_file = tmp_path / "ran-once", tmp_path / "pid"
    script = f"[ -f {marker} ] && exit 0; touch {marker}; echo $$ > {pid_file}; exec sleep 60"
    first = Worker(fast_config(nats_url, worker_id="w-first"))
    await first.start()
    await harness.queue("wf", "job", run=script)
    await settled(harness, "wf", "job", JobStarted)
    await assert_eventually(pid_file.exists)
    await first.stop(graceful=False)
    assert first.aborted and process_gone(pid_file)
    assert await harness.types("wf", "job") == ["JobQueued", "JobStarted"]
    aborted_at = time.monotonic()
    async with running(Worker(fast_config(nats_url, worker_id="w-second"))):
        done = await settled(harness, "wf", "job", JobSucceeded)
    rerun_after = time.monotonic() - aborted_at
    started = await harness.events("wf", "job", JobStarted)
    assert [(s.epoch, s.worker_id, s.delivery) for s in started] == [
        (1, "w-first", 1),
        (2, "w-second", 2),
    ]
    assert done.epoch == 2
    assert rerun_after < 2.0 + 1.5, rerun_after  # the 2 s lease, then a prompt redelivery


async def test_a_lease_is_lost_when_heartbeats_cannot_reach_the_server(tmp_path: Path) -> None:
    """NATS down for longer than the lease: the job's process is stopped, nothing is reported;
    once NATS is back the job is redelivered and runs again."""
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="always").start()
    marker, pid_file = tmp_path / "ran-once", tmp_path / "pid"
    script = f"[ -f {marker} ] && exit 0; touch {marker}; echo $$ > {pid_file}; exec sleep 60"
    worker = Worker(fast_config(server.url, worker_id="w-cut-off"))
    nc = None
    try:
        await worker.start()
        nc = await connect(NatsSettings(url=server.url, name="test-harness"))
        harness = JobsHarness(nc)
        await harness.queue("wf", "job", run=script)
        await settled(harness, "wf", "job", JobStarted)
        await assert_eventually(pid_file.exists)
        server.kill()
        cut_at = time.monotonic()
        await assert_eventually(lambda: process_gone(pid_file), timeout=10)
        stopped_after = time.monotonic() - cut_at
        print(f"job process stopped {stopped_after:.2f}s after NATS went down (lease 2s)")
        # The lease counts from the last confirmed heartbeat (at most one tick before the cut).
        assert 1.5 <= stopped_after < 2.0 + 1.5, stopped_after
        server.start()  # same port and store: both clients reconnect
        done = await settled(harness, "wf", "job", JobSucceeded)
        started = await harness.events("wf", "job", JobStarted)
        assert [s.epoch for s in started] == [1, 2]
        assert done.epoch == 2
        assert await harness.types("wf", "job") == [
            "JobQueued",
            "JobStarted",
            "JobStarted",
            "JobSucceeded",
        ]
    finally:
        await worker.stop()
        if nc is not None:
            await nc.close()
        server.stop()


# --- presence, shutdown, bad input -----------------------------------------------------------


async def test_presence_is_announced_refreshed_and_removed(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url, worker_id="w-seen", labels={"linux"}))

    @worker.job("noop")
    async def noop(ctx: JobContext) -> None:
        await asyncio.sleep(1.5)

    kv = await harness.nc.jetstream().key_value(subjects.KV_WORKERS)
    async with running(worker):
        await harness.queue("wf", "busy", uses="noop")

        async def shows_running_job() -> WorkerPresence:
            presence = WorkerPresence.decode((await kv.get("w-seen")).value or b"")
            assert [(r.job, r.epoch) for r in presence.running] == [("busy", 1)]
            return presence

        presence = await assert_eventually(shows_running_job)
        assert presence.labels == ("linux",) and presence.handlers == ("noop",)
        assert presence.concurrency == 1 and presence.pid == os.getpid()
        assert presence.last_seen >= presence.started_at
        await settled(harness, "wf", "busy", JobSucceeded)
    with pytest.raises(KeyNotFoundError):
        await kv.get("w-seen")


async def test_graceful_stop_finishes_and_reports_the_running_job(
    harness: JobsHarness, nats_url: str
) -> None:
    worker = Worker(fast_config(nats_url))
    await worker.start()
    await harness.queue("wf", "job", run="sleep 1; echo '::set-output ok=1'")
    await settled(harness, "wf", "job", JobStarted)
    await worker.stop()
    assert not worker.aborted
    done = await harness.events("wf", "job", JobSucceeded)
    assert [d.outputs for d in done] == [{"ok": "1"}]
    assert await jobs_in_queue(harness.nc) == 0


async def test_workers_in_one_process_share_the_signals(
    harness: JobsHarness, nats_url: str
) -> None:
    workers = [Worker(fast_config(nats_url, worker_id=f"w-{i}")) for i in range(2)]
    runs = asyncio.gather(*(w.run() for w in workers))
    await assert_eventually(lambda: all(w.phase == "running" for w in workers))
    await harness.queue("wf", "job", run="sleep 0.5")
    await settled(harness, "wf", "job", JobStarted)
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the hub is installed
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(runs, 10)
    assert [w.phase for w in workers] == ["stopped", "stopped"]
    assert not any(w.aborted for w in workers)
    assert len(await harness.events("wf", "job", JobSucceeded)) == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the last one


async def test_a_malformed_dispatch_goes_to_dead_letters(
    harness: JobsHarness, nats_url: str
) -> None:
    await LabelSets(harness.nc).register(["~"])
    js = harness.nc.jetstream()
    garbage = subjects.job_queued("wf", "garbage", "~")
    await js.publish(garbage, b"garbage")
    async with running(Worker(fast_config(nats_url))):

        async def dead_letter() -> Any:
            info = await js.stream_info(subjects.DEAD_LETTERS_STREAM)
            assert info.state.messages == 1
            return await js.get_msg(subjects.DEAD_LETTERS_STREAM, info.state.first_seq)

        letter = await assert_eventually(dead_letter)
        assert letter.data == b"garbage"
        assert "not valid JSON" in (letter.headers or {})["Jetwork-Reason"]
        await assert_eventually(lambda: _empty(harness.nc))


async def _drained(nc: NATS, labelset: LabelSet) -> bool:
    """The label set's consumer exists, has delivered and holds nothing any more."""
    try:
        info = await nc.jetstream().consumer_info(subjects.EVENTS_STREAM, labelset.consumer)
    except NotFoundError:
        return False
    return info.delivered.stream_seq > 0 and not info.num_pending and not info.num_ack_pending


async def _empty(nc: NATS) -> bool:
    return await jobs_in_queue(nc) == 0


@pytest.mark.parametrize("cancelled", [False, True])
async def test_a_first_claim_comes_from_the_event_and_a_changed_job_is_read(
    harness: JobsHarness, nats_url: str, cancelled: bool
) -> None:
    wf = f"from-event-{cancelled}"
    await harness.queue(wf, "j", run="true")
    if cancelled:  # after the JobQueued a worker receives: its claim's CAS finds it changed
        await harness.cancel(wf, "j", notice=False)
    async with running(Worker(fast_config(nats_url))):
        await assert_eventually(lambda: _drained(harness.nc, LabelSet.of(())))
        if not cancelled:
            await settled(harness, wf, "j", JobSucceeded)
    if cancelled:
        assert await harness.types(wf, "j") == ["JobQueued", "JobCancelled"]
    else:
        started = await harness.events(wf, "j", JobStarted)
        assert [event.epoch for event in started] == [1]
        assert await harness.types(wf, "j") == ["JobQueued", "JobStarted", "JobSucceeded"]
