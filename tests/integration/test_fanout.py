"""Fan-out (strategy.matrix and for_each) through the real engine and real shell workers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors.definitions import load_workflow_file
from actors.definitions.mapping import definition_mapping
from actors.engine import Engine, EngineSettings
from events.base import RecordedEvent
from events.catalog import JobEvent, JobQueued, JobStarted, JobStatus, JobSucceeded
from events.store import EventStore
from sdk.client import Client
from sdk.worker import Worker
from tests.engine_harness import cancel_workflow, ended, start_workflow, types
from tests.eventually import assert_eventually
from tests.invariants import check_history
from tests.jobs_harness import fast_config

SETTINGS = EngineSettings(ack_wait=5.0, poll_interval=0.2)


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running = Engine(clean_nats, settings=SETTINGS)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def worker(nats_url: str) -> AsyncIterator[Worker]:
    running = Worker(fast_config(nats_url, worker_id="w-shell", max_concurrent_jobs=4))
    await running.start()
    yield running
    await running.stop()


async def finished(store: EventStore, wf: str, timeout: float = 60) -> list[RecordedEvent]:
    async def probe() -> list[RecordedEvent] | None:
        history = await store.history(wf)
        return history if ended(history) else None

    found: list[RecordedEvent] = await assert_eventually(
        probe, timeout=timeout, message=f"workflow {wf} never ended"
    )
    return found


def most_active(history: list[RecordedEvent], job: str) -> int:
    """The most instances of ``job`` queued or running at once, read from the log."""
    active: set[str] = set()
    most = 0
    for record in history:
        event = record.event
        if not isinstance(event, JobEvent) or not event.job.startswith(f"{job}-"):
            continue
        if isinstance(event, JobQueued):
            active.add(event.job)
        elif event.event_type in ("JobSucceeded", "JobCancelled", "JobSkipped") or (
            event.event_type == "JobFailed" and not getattr(event, "will_retry", False)
        ):
            active.discard(event.job)
        most = max(most, len(active))
    return most


def outputs_of(history: list[RecordedEvent], job: str) -> dict[str, str]:
    return next(
        r.event.outputs  # type: ignore[union-attr]
        for r in history
        if r.event.event_type in ("JobSucceeded", "JobFannedIn")
        and getattr(r.event, "job", None) == job
    )


def assert_consistent(history: list[RecordedEvent]) -> None:
    report = check_history(history)
    assert report.ok, report.summary()


async def test_a_matrix_runs_each_combination_on_the_worker_its_label_names(
    clean_nats: NATS, nats_url: str, engine: Engine
) -> None:
    workers = [
        Worker(
            fast_config(
                nats_url, worker_id=f"w-{os}", labels=frozenset({os}), max_concurrent_jobs=4
            )
        )
        for os in ("linux", "mac")
    ]
    definition = {
        "name": "matrix",
        "jobs": {
            "test": {
                "strategy": {
                    "matrix": {"os": ["linux", "mac"], "py": ["3.11", "3.12"]},
                    "max_parallel": 2,
                },
                "labels": ["${{ matrix.os }}"],
                "env": {"PY": "${{ matrix.py }}"},
                "run": 'sleep 0.2; echo "::set-output seen=${{ matrix.os }}-$PY"',
            },
            "report": {"needs": ["test"], "run": "echo '${{ needs.test.outputs.seen }}'"},
        },
    }
    for worker in workers:
        await worker.start()
    try:
        await start_workflow(clean_nats, "wf-matrix", definition)
        history = await finished(EventStore(clean_nats), "wf-matrix")
    finally:
        for worker in workers:
            await worker.stop()
    assert ended(history) == "WorkflowSucceeded"
    ran_on = {r.event.job: r.event.worker_id for r in history if isinstance(r.event, JobStarted)}
    assert ran_on == {
        "test-0": "w-linux",
        "test-1": "w-linux",
        "test-2": "w-mac",
        "test-3": "w-mac",
        "report": ran_on["report"],
    }
    seen = ["linux-3.11", "linux-3.12", "mac-3.11", "mac-3.12"]
    assert json.loads(outputs_of(history, "test")["seen"]) == seen
    assert most_active(history, "test") == 2
    assert_consistent(history)


async def test_for_each_over_a_previous_jobs_output_in_status_and_logs(
    clean_nats: NATS, nats_url: str, engine: Engine, worker: Worker
) -> None:
    definition = {
        "name": "for-each",
        "jobs": {
            "list": {"run": """echo '::set-output items=["a", "b", "c"]'"""},
            "each": {
                "needs": ["list"],
                "for_each": "${{ fromJSON(needs.list.outputs.items) }}",
                "run": 'echo "item ${{ item }} at ${{ index }}"; '
                'echo "::set-output up=$(echo ${{ item }} | tr a-z A-Z)"',
            },
            "join": {
                "needs": ["each"],
                "run": "echo '::set-output all=${{ needs.each.outputs.up }}'",
            },
        },
    }
    await start_workflow(clean_nats, "wf-each", definition)
    history = await finished(EventStore(clean_nats), "wf-each")
    assert ended(history) == "WorkflowSucceeded"
    assert outputs_of(history, "each") == {"up": '["A","B","C"]'}
    assert outputs_of(history, "join") == {"all": '["A","B","C"]'}
    client = Client(clean_nats)
    view = await client.status("wf-each")
    assert list(view.jobs) == ["list", "each", "each-0", "each-1", "each-2", "join"]
    assert {name: job.status for name, job in view.jobs.items()} == dict.fromkeys(
        view.jobs, "succeeded"
    )
    lines = [line.line async for line in client.logs("wf-each", "each-1")]
    assert "item b at 1" in lines
    assert "job.each.JobFannedOut" in types(history)
    assert_consistent(history)


async def test_fail_fast_cancels_the_remaining_instances(
    clean_nats: NATS, nats_url: str, engine: Engine, worker: Worker
) -> None:
    definition = {
        "name": "fail-fast",
        "jobs": {
            "each": {
                "for_each": list(range(8)),
                "max_parallel": 2,
                "run": "if [ ${{ item }} = 1 ]; then exit 3; fi; sleep 5",
            },
            "after": {"needs": ["each"], "run": "true"},
        },
    }
    await start_workflow(clean_nats, "wf-fail-fast", definition)
    history = await finished(EventStore(clean_nats), "wf-fail-fast", timeout=30)
    assert ended(history) == "WorkflowFailed"
    queued = {r.event.job for r in history if isinstance(r.event, JobQueued)}
    assert queued == {"each-0", "each-1"}  # the others never started
    ends = {
        r.event.job: r.event.event_type
        for r in history
        if isinstance(r.event, JobEvent)
        and r.event.event_type in ("JobCancelled", "JobFailed", "JobFannedIn", "JobSkipped")
    }
    assert ends == {
        "each-0": "JobCancelled",
        "each-1": "JobFailed",
        "each": "JobFannedIn",
        "after": "JobSkipped",
    }
    view = await Client(clean_nats).status("wf-fail-fast")
    assert view.jobs["each"].error == "1 of 8 instances failed: each-1; 6 not started (fail_fast)"
    # Never started, and the workflow has ended: shown cancelled, as GitHub shows them.
    assert view.jobs["each-5"].status == JobStatus.CANCELLED.value
    assert_consistent(history)


async def test_an_item_list_that_is_no_list_fails_the_job_saying_where(
    clean_nats: NATS, engine: Engine, worker: Worker
) -> None:
    definition: dict[str, Any] = {
        "name": "bad-list",
        "jobs": {
            "list": {"run": "echo '::set-output items=not json'"},
            "each": {
                "needs": ["list"],
                "for_each": "${{ needs.list.outputs.items }}",
                "run": "true",
            },
        },
    }
    await start_workflow(clean_nats, "wf-bad-list", definition)
    history = await finished(EventStore(clean_nats), "wf-bad-list")
    assert ended(history) == "WorkflowFailed"
    view = await Client(clean_nats).status("wf-bad-list")
    assert view.jobs["each"].error == (
        "jobs.each.for_each: expected a JSON list of items, got text 'not json'"
    )


@pytest.mark.parametrize("how", ["stopped", "abandoned"])
async def test_an_engine_restarted_mid_fan_out_finishes_it_once(
    clean_nats: NATS, nats_url: str, worker: Worker, how: str
) -> None:
    store = EventStore(clean_nats)
    definition = {
        "name": "restart",
        "jobs": {
            "each": {"for_each": list(range(24)), "max_parallel": 3, "run": "sleep 0.1"},
            "after": {"needs": ["each"], "run": "echo '${{ needs.each.result }}'"},
        },
    }
    first = Engine(clean_nats, settings=SETTINGS)
    await first.start()
    second = None
    try:
        await start_workflow(clean_nats, "wf-restart", definition)

        async def some_done() -> bool:
            history = await store.history("wf-restart")
            return sum(r.event.event_type == "JobSucceeded" for r in history) >= 4

        await assert_eventually(some_done, timeout=30)
        if how == "stopped":
            await first.stop()
        else:
            await first.abandon()  # killed: no ack for what it held, JetStream redelivers it
        middle = len(await store.history("wf-restart"))
        second = Engine(clean_nats, settings=SETTINGS)
        await second.start()
        history = await finished(store, "wf-restart")
    finally:
        if second is not None:
            await second.stop()
    assert ended(history) == "WorkflowSucceeded"
    assert len(history) > middle
    kinds = types(history)
    for index in range(24):
        assert kinds.count(f"job.each-{index}.JobQueued") == 1
        assert kinds.count(f"job.each-{index}.JobSucceeded") == 1
    assert kinds.count("job.each.JobFannedOut") == 1
    assert most_active(history, "each") <= 3
    assert_consistent(history)


@pytest.mark.parametrize("example", ["matrix.yaml", "for_each.yaml"])
async def test_the_examples_run(
    clean_nats: NATS, engine: Engine, worker: Worker, repo_root: Path, example: str
) -> None:
    definition = definition_mapping(load_workflow_file(repo_root / "examples" / example))
    wf = f"wf-example-{example.split('.')[0].replace('_', '-')}"
    await start_workflow(clean_nats, wf, definition)
    history = await finished(EventStore(clean_nats), wf)
    assert ended(history) == "WorkflowSucceeded"
    last = history[-2].event  # the last job's success, before the workflow's
    assert isinstance(last, JobSucceeded)
    expected = {
        "matrix.yaml": {},
        "for_each.yaml": {"sizes": "[1,11,21,31,41]"},  # the shell took the quotes
    }[example]
    assert last.outputs == expected
    assert_consistent(history)


async def test_cancelling_the_workflow_stops_the_fan_out(
    clean_nats: NATS, engine: Engine, worker: Worker
) -> None:
    store = EventStore(clean_nats)
    definition = {
        "name": "cancel-fan",
        "jobs": {"each": {"for_each": list(range(6)), "max_parallel": 2, "run": "sleep 30"}},
    }
    await start_workflow(clean_nats, "wf-cancel-fan", definition)

    async def two_running() -> bool:
        history = await store.history("wf-cancel-fan")
        return sum(isinstance(r.event, JobStarted) for r in history) == 2

    await assert_eventually(two_running, timeout=20)
    await cancel_workflow(clean_nats, "wf-cancel-fan")
    history = await finished(store, "wf-cancel-fan", timeout=30)
    assert ended(history) == "WorkflowCancelled"
    kinds = types(history)
    assert kinds.count("job.each-0.JobCancelled") == kinds.count("job.each-1.JobCancelled") == 1
    assert "job.each.JobCancelled" in kinds
    assert not any(kind.startswith("job.each-2.") for kind in kinds)
    assert_consistent(history)


async def test_following_a_large_fan_out_draws_a_view_per_burst(
    clean_nats: NATS, engine: Engine, worker: Worker
) -> None:
    definition = {
        "name": "large",
        "jobs": {"each": {"for_each": list(range(300)), "run": "true"}},
    }
    await start_workflow(clean_nats, "wf-large", definition)
    client = Client(clean_nats)
    store = EventStore(clean_nats)

    async def ended() -> bool:
        history = await store.history("wf-large")
        return bool(history) and history[-1].event.event_type == "WorkflowSucceeded"

    # Followed once its 904 events are all in the log: they arrive as bursts, whatever the
    # speed of this machine (followed live, a follower quicker than the workers sees them one
    # by one, and draws as many views, as it should).
    await assert_eventually(ended, timeout=60, message="the fan-out never ended")
    views = [view async for view in client.follow("wf-large")]
    history = await store.history("wf-large")
    assert views[-1].status == "succeeded"
    assert len(views[-1].jobs) == 301
    assert len(views) < len(history)  # (it was one view per event)
