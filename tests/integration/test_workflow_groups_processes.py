"""Workflow concurrency groups with real processes: two ``jetwork server --no-http
--no-projector`` engines and a ``jetwork worker``, one engine SIGKILLed while the group's runs
go through it (its partitions move to the survivor after their lease), then started again.
Every run ends succeeded, and from the histories no more than ``limit`` ran at once, by their
admissions and by their jobs' claims and results: no slot leaked, none granted twice."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from events import subjects
from events.catalog import JobStarted, JobSucceeded, WorkflowAdmitted, WorkflowSucceeded
from events.store import EventStore
from tests.chaos_processes import Managed, clean_env, jetwork
from tests.engine_harness import start_workflow
from tests.eventually import assert_eventually
from tests.integration.test_workflow_groups import _ENDS, definition, ended_all, first, most_at_once

pytestmark = pytest.mark.slow
LIMIT = 2


@pytest.fixture
def processes(clean_nats: NATS, nats_url: str, tmp_path: Path) -> Iterator[dict[str, Managed]]:
    """(After ``clean_nats``: the processes start on fresh streams.)"""
    engine = jetwork("server", "--no-http", "--no-projector", "--nats", nats_url)
    worker = jetwork("worker", "--nats", nats_url, "--concurrency", "8")
    started = {
        "engine-1": Managed("engine-1", lambda _: engine, clean_env(), tmp_path / "e1.log"),
        "engine-2": Managed("engine-2", lambda _: engine, clean_env(), tmp_path / "e2.log"),
        "worker": Managed("worker", lambda _: worker, clean_env(), tmp_path / "w.log"),
    }
    for process in started.values():
        process.start()
    try:
        yield started
    finally:
        for process in started.values():
            process.stop()


async def _owners(nc: NATS) -> set[str]:
    """The engines holding partition leases (KV ``jw_partitions``, ``engine.p.<n>``)."""
    kv = await nc.jetstream().key_value(subjects.KV_PARTITIONS)
    owners = set()
    for partition in range(subjects.PARTITIONS):
        with contextlib.suppress(KeyNotFoundError):
            entry = await kv.get(f"engine.p.{partition}")
            owners.add(orjson.loads(entry.value or b"{}").get("owner"))
    return owners - {None}


async def _both_own_partitions(nc: NATS) -> bool:
    assert len(await _owners(nc)) == 2
    return True


async def _admitted(store: EventStore, ids: list[str], count: int) -> bool:
    seen = 0
    for wf in ids:
        if first(await store.history(wf), WorkflowAdmitted) is not None:
            seen += 1
    assert seen >= count, seen
    return True


async def test_an_engine_killed_mid_run_leaks_no_slot_and_grants_none_twice(
    clean_nats: NATS, processes: dict[str, Managed]
) -> None:
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    ids = [f"wf-kill-{n}" for n in range(12)]
    shape = definition(group, LIMIT, run="sleep 0.5")
    # Both engines own partitions (the first one up takes all 16, then gives half back).
    await assert_eventually(lambda: _both_own_partitions(clean_nats), timeout=30, interval=0.2)
    await asyncio.gather(*(start_workflow(clean_nats, wf, shape) for wf in ids))
    await assert_eventually(lambda: _admitted(store, ids, 3), timeout=60, interval=0.2)
    processes["engine-1"].kill()  # no goodbye: its leases lapse, its messages come back
    await assert_eventually(lambda: _admitted(store, ids, 7), timeout=60, interval=0.2)
    processes["engine-1"].start()
    histories = await assert_eventually(lambda: ended_all(store, ids), timeout=120, interval=0.5)
    admitted, jobs = [], []
    for wf, events in histories.items():
        end = first(events, _ENDS)
        assert isinstance(end, WorkflowSucceeded), (wf, end)
        admitted.append((first(events, WorkflowAdmitted).at, end.ended_at))
        claims = [r.event.started_at for r in events if isinstance(r.event, JobStarted)]
        results = [r.event.ended_at for r in events if isinstance(r.event, JobSucceeded)]
        jobs.append((min(claims), max(results)))
    assert most_at_once(admitted) <= LIMIT, sorted(admitted)
    assert most_at_once(jobs) <= LIMIT, sorted(jobs)
