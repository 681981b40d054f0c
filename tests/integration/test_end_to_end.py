"""Whole workflows through the real engine, the real dispatcher and real workers.

Engine and in-process workers share the test's server; worker processes are real
``jetwork worker`` processes (see ``test_worker_processes``), killed on purpose.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from pydantic import BaseModel

from actors.engine import Engine, EngineSettings
from events.base import RecordedEvent
from events.store import EventStore
from sdk.worker import Worker
from sdk.worker.handlers import PermanentError
from sdk.worker.job_context import JobContext
from tests.claims import claims
from tests.engine_harness import cancel_workflow, ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.integration.test_worker_processes import ready, spawn  # noqa: F401  (fixture)
from tests.jobs_harness import fast_config


class AddIn(BaseModel):
    x: int
    y: int


class AddOut(BaseModel):
    total: int


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running = Engine(clean_nats, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    await running.start()
    yield running
    await running.stop()


async def finished(store: EventStore, wf: str, timeout: float = 30) -> list[RecordedEvent]:
    async def probe() -> list[RecordedEvent] | None:
        history = await store.history(wf)
        return history if ended(history) else None

    found: list[RecordedEvent] = await assert_eventually(
        probe, timeout=timeout, message=f"workflow {wf} never ended"
    )
    return found


def started_by(history: list[RecordedEvent], job: str) -> list[str | None]:
    return [claim.worker_id for claim in claims(history, job)]


async def test_labels_handlers_and_outputs_across_two_workers(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    linux = Worker(fast_config(nats_url, worker_id="w-linux", labels=frozenset({"linux"})))
    gpu = Worker(fast_config(nats_url, worker_id="w-gpu", labels=frozenset({"gpu"})))

    @gpu.job("add")
    async def add(ctx: JobContext, inputs: AddIn) -> AddOut:
        ctx.log.info(f"adding {inputs.x} and {inputs.y}")
        return AddOut(total=inputs.x + inputs.y)

    definition = {
        "name": "mixed",
        "jobs": {
            "make": {"run": 'echo "::set-output n=40"', "labels": ["linux"]},
            "sum": {
                "needs": ["make"],
                "uses": "add",
                "with": {"x": "${{ needs.make.outputs.n }}", "y": 2},
            },
            "show": {
                "needs": ["sum"],
                "labels": ["linux"],
                "run": 'echo "::set-output seen=${{ needs.sum.outputs.total }}"',
            },
        },
    }
    await linux.start()
    await gpu.start()
    try:
        await start_workflow(clean_nats, "wf-mixed", definition)
        history = await finished(EventStore(clean_nats), "wf-mixed")
    finally:
        await linux.stop()
        await gpu.stop()
    assert ended(history) == "WorkflowSucceeded"
    assert started_by(history, "make") == ["w-linux"]
    assert started_by(history, "sum") == ["w-gpu"]
    assert started_by(history, "show") == ["w-linux"]
    succeeded = {r.event.job: r.event for r in history if r.event.event_type == "JobSucceeded"}
    assert succeeded["sum"].outputs["total"] == "42"
    assert succeeded["show"].outputs == {"seen": "42"}


async def test_retry_with_backoff_and_a_permanent_failure(
    clean_nats: NATS, nats_url: str, engine: Engine, tmp_path: Path
) -> None:
    worker = Worker(fast_config(nats_url, worker_id="w-any"))

    @worker.job("refuse")
    async def refuse(ctx: JobContext, inputs: dict[str, Any]) -> None:
        raise PermanentError("this input can never work")

    marker = tmp_path / "seen"
    definition = {
        "name": "retries",
        "jobs": {
            "flaky": {
                "run": f"if [ -e {marker} ]; then echo ok; else touch {marker}; exit 3; fi",
                "retry": {"max_attempts": 3, "backoff": "fixed", "delay": "1s"},
            },
            "doomed": {"uses": "refuse", "retry": {"max_attempts": 5}, "on_failure": "continue"},
        },
    }
    await worker.start()
    try:
        await start_workflow(clean_nats, "wf-retries", definition)
        history = await finished(EventStore(clean_nats), "wf-retries")
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowSucceeded"  # doomed fails, but on_failure: continue
    kinds = types(history)
    assert len(claims(history, "flaky")) == 2
    assert kinds.count("job.flaky.JobRetryScheduled") == 1
    failed = next(r.event for r in history if r.subject.endswith("flaky.JobFailed"))
    assert "exit code 3" in failed.error
    assert len(claims(history, "doomed")) == 1  # permanent: never retried
    doomed = next(r.event for r in history if r.subject.endswith("doomed.JobFailed"))
    assert not doomed.retryable
    assert "this input can never work" in doomed.error


async def test_a_killed_worker_process_s_job_reruns_and_the_workflow_succeeds(
    clean_nats: NATS,
    engine: Engine,
    spawn: Any,  # noqa: F811
) -> None:
    workers = {w.worker_id: w for w in (spawn("w-one"), spawn("w-two"))}
    await ready(clean_nats, *workers.values())
    definition = {
        "name": "survivor",
        "jobs": {
            "slow": {"run": 'sleep 1; echo "::set-output by=$JETWORK_WORKER_ID"'},
            "after": {
                "needs": ["slow"],
                "run": 'echo "::set-output got=${{ needs.slow.outputs.by }}"',
            },
        },
    }
    store = EventStore(clean_nats)
    await start_workflow(clean_nats, "wf-survivor", definition)

    async def claimed() -> str | None:
        found = started_by(await store.history("wf-survivor"), "slow")
        return found[0] if found else None

    victim_id = await assert_eventually(claimed, timeout=15)
    workers.pop(victim_id).signal(signal.SIGKILL)
    history = await finished(store, "wf-survivor")
    (survivor_id,) = workers
    assert ended(history) == "WorkflowSucceeded"
    assert started_by(history, "slow") == [victim_id, survivor_id]
    assert types(history).count("job.slow.JobSucceeded") == 1
    after = next(r.event for r in history if r.subject.endswith("after.JobSucceeded"))
    assert after.outputs == {"got": survivor_id}


async def test_cancelling_a_running_workflow_stops_its_process(
    clean_nats: NATS, nats_url: str, engine: Engine, tmp_path: Path
) -> None:
    worker = Worker(fast_config(nats_url, worker_id="w-cancel"))
    pid_file = tmp_path / "pid"
    definition = {
        "name": "long",
        "jobs": {"sleepy": {"run": f"echo $$ > {pid_file}; exec sleep 60"}},
    }
    store = EventStore(clean_nats)
    await worker.start()
    try:
        await start_workflow(clean_nats, "wf-long", definition)
        await assert_eventually(
            lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=15
        )
        pid = int(pid_file.read_text())
        await cancel_workflow(clean_nats, "wf-long", reason="no longer needed")
        history = await finished(store, "wf-long", timeout=10)
    finally:
        await worker.stop()
    assert ended(history) == "WorkflowCancelled"
    assert "job.sleepy.JobCancelled" in types(history)
    assert not process_alive(pid)


def process_alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text().lower()
