"""Workflow concurrency groups on a real nats-server, two engines (each on its own connection,
sharing the 16 partitions) and a real worker running shell jobs:

- many workflows of one group started at once never run more than ``limit`` at a time, checked
  from their histories (``WorkflowAdmitted`` … their end, and their jobs' claims and results);
- runs started one after another are admitted in that order;
- a failed, cancelled (queued or running) run gives its slot back;
- ``cancel_in_progress``: a newcomer cancels the running member, whose history says why;
- a slot left by a run whose end was never given back (its engine died) is found from the log;
- a job group's ``cancel_in_progress``: a newcomer's worker cancels the older running job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS

from actors import groups
from actors.engine.engine import Engine
from actors.engine.settings import EngineSettings
from actors.group_queue import GroupQueue, Member
from events import subjects
from events.base import RecordedEvent
from events.catalog import (
    JobCancelled,
    JobCancelRequested,
    JobStarted,
    JobSucceeded,
    WorkflowAdmitted,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowQueued,
    WorkflowSucceeded,
)
from events.connection import NatsSettings, connect
from events.store import EventStore
from sdk.worker import Worker
from tests.engine_harness import FAST, cancel_workflow, start_workflow
from tests.eventually import assert_eventually
from tests.jobs_harness import fast_config, running

pytestmark = pytest.mark.slow
_ENDS = (WorkflowSucceeded, WorkflowFailed, WorkflowCancelled)


def definition(group: str, limit: int, run: str = "sleep 0.3", **extra: Any) -> dict[str, Any]:
    return {
        "name": "deploy",
        "inputs": {"env": {"default": "prod"}},
        "concurrency": {"group": f"{group}-${{{{ inputs.env }}}}", "limit": limit, **extra},
        "jobs": {"a": {"run": run}, "b": {"run": run, "needs": ["a"]}},
    }


@asynccontextmanager
async def two_engines(nats_url: str) -> AsyncIterator[list[Engine]]:
    connections = [await connect(NatsSettings(url=nats_url, name=f"e{n}")) for n in range(2)]
    engines = [Engine(nc, settings=EngineSettings(**FAST.__dict__)) for nc in connections]
    await asyncio.gather(*(engine.start() for engine in engines))
    try:
        yield engines
    finally:
        await asyncio.gather(*(engine.stop() for engine in engines))
        for nc in connections:
            await nc.close()


@asynccontextmanager
async def a_worker(nats_url: str) -> AsyncIterator[None]:
    async with running(Worker(fast_config(nats_url, max_concurrent_jobs=8))):
        yield


async def history(store: EventStore, wf: str) -> list[RecordedEvent]:
    return await store.history(wf)


def first(events: list[RecordedEvent], kind: type[Any]) -> Any:
    return next((r.event for r in events if isinstance(r.event, kind)), None)


async def ended_all(store: EventStore, ids: list[str]) -> dict[str, list[RecordedEvent]]:
    histories = {wf: await history(store, wf) for wf in ids}
    for wf, events in histories.items():
        assert first(events, _ENDS) is not None, (wf, [r.event.event_type for r in events])
    return histories


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, step in edges:  # (an end at the same instant as a start counts first: -1 < 1)
        now += step
        most = max(most, now)
    return most


async def test_many_runs_started_at_once_never_exceed_the_limit(
    clean_nats: NATS, nats_url: str
) -> None:
    store, group, limit = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}", 2
    ids = [f"wf-many-{n}" for n in range(14)]
    assert len({subjects.partition_of(wf) for wf in ids}) > 4  # spread over both engines
    async with two_engines(nats_url) as engines, a_worker(nats_url):
        assert all(engine.ownership.partitions for engine in engines)
        await asyncio.gather(
            *(start_workflow(clean_nats, wf, definition(group, limit)) for wf in ids)
        )
        histories = await assert_eventually(lambda: ended_all(store, ids), timeout=90, interval=0.5)
    admitted, jobs = [], []
    for wf, events in histories.items():
        assert isinstance(first(events, _ENDS), WorkflowSucceeded), wf
        queued = first(events, WorkflowQueued)
        assert queued.group == f"{group}-prod" and queued.limit == limit
        admitted.append((first(events, WorkflowAdmitted).at, first(events, _ENDS).ended_at))
        claims = [r.event for r in events if isinstance(r.event, JobStarted)]
        results = [r.event for r in events if isinstance(r.event, JobSucceeded)]
        jobs.append((min(c.started_at for c in claims), max(r.ended_at for r in results)))
    assert most_at_once(admitted) <= limit, sorted(admitted)
    assert most_at_once(jobs) <= limit, sorted(jobs)
    assert most_at_once(jobs) == limit  # (the group was full at some point: the test can fail)
    await assert_eventually(lambda: _queue_is_empty(clean_nats, f"{group}-prod"), timeout=10)


async def _queue_is_empty(nc: NATS, group: str) -> bool:
    entry = await (await nc.jetstream().key_value(subjects.KV_CONCURRENCY)).get(groups.key(group))
    queue = GroupQueue.model_validate(orjson.loads(entry.value or b"{}"))
    assert queue.holders == () and queue.waiting == (), queue
    return True


async def _in_queue(nc: NATS, group: str, wf: str) -> bool:
    """``wf`` entered the group's queue (its place in the line is taken)."""
    entry = await (await nc.jetstream().key_value(subjects.KV_CONCURRENCY)).get(groups.key(group))
    queue = GroupQueue.model_validate(orjson.loads(entry.value or b"{}"))
    assert wf in {member.workflow_id for member in queue.members}, queue
    return True


async def _status(store: EventStore, wf: str, kind: type[Any]) -> bool:
    assert first(await history(store, wf), kind) is not None, wf
    return True


async def test_runs_are_admitted_in_the_order_they_queued_and_every_end_frees_the_slot(
    clean_nats: NATS, nats_url: str
) -> None:
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    ids = [f"wf-order-{n}" for n in range(5)]
    async with two_engines(nats_url), a_worker(nats_url):
        # wf-order-0 fails, 1 is cancelled while it runs, 2 is cancelled while it waits.
        await start_workflow(clean_nats, ids[0], definition(group, 1, run="sleep 0.5; exit 3"))
        await assert_eventually(lambda: _status(store, ids[0], WorkflowAdmitted), timeout=10)
        await start_workflow(clean_nats, ids[1], definition(group, 1, run="sleep 30"))
        await assert_eventually(lambda: _in_queue(clean_nats, f"{group}-prod", ids[1]))
        for wf in ids[2:]:
            await start_workflow(clean_nats, wf, definition(group, 1))
            await assert_eventually(lambda wf=wf: _in_queue(clean_nats, f"{group}-prod", wf))
        await cancel_workflow(clean_nats, ids[2], reason="not wanted")
        await assert_eventually(lambda: _status(store, ids[1], JobStarted), timeout=20)
        await cancel_workflow(clean_nats, ids[1], reason="stop it")
        histories = await assert_eventually(lambda: ended_all(store, ids), timeout=60, interval=0.5)
    ends = {wf: type(first(events, _ENDS)).__name__ for wf, events in histories.items()}
    assert ends == {
        ids[0]: "WorkflowFailed",
        ids[1]: "WorkflowCancelled",
        ids[2]: "WorkflowCancelled",
        ids[3]: "WorkflowSucceeded",
        ids[4]: "WorkflowSucceeded",
    }
    assert first(histories[ids[2]], WorkflowAdmitted) is None  # cancelled while it waited
    assert not any(isinstance(r.event, JobStarted) for r in histories[ids[2]])
    order = sorted(
        (first(events, WorkflowAdmitted).at, wf)
        for wf, events in histories.items()
        if first(events, WorkflowAdmitted) is not None
    )
    assert [wf for _, wf in order] == [ids[0], ids[1], ids[3], ids[4]]


async def test_cancel_in_progress_cancels_the_running_member_and_says_why(
    clean_nats: NATS, nats_url: str
) -> None:
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    old, new = "wf-old-run", "wf-new-run"
    async with two_engines(nats_url), a_worker(nats_url):
        await start_workflow(
            clean_nats, old, definition(group, 1, run="sleep 30", cancel_in_progress=True)
        )
        await assert_eventually(lambda: _status(store, old, JobStarted), timeout=20)
        await start_workflow(clean_nats, new, definition(group, 1, cancel_in_progress=True))
        histories = await assert_eventually(
            lambda: ended_all(store, [old, new]), timeout=60, interval=0.5
        )
    cancelled = first(histories[old], WorkflowCancelled)
    assert cancelled is not None
    assert cancelled.reason == groups.superseded_reason(new, f"{group}-prod")
    assert isinstance(first(histories[new], _ENDS), WorkflowSucceeded)
    assert first(histories[new], WorkflowAdmitted).at >= cancelled.ended_at


async def test_a_slot_held_by_a_run_that_ended_without_giving_it_back_is_freed(
    clean_nats: NATS, nats_url: str
) -> None:
    """The engine that ended ``wf-gone`` died before giving its slot back: the queue still names
    it (a holder since long ago, whose workflow has no event in the log)."""
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    kv = await clean_nats.jetstream().key_value(subjects.KV_CONCURRENCY)
    stale = GroupQueue(limit=1, holders=(Member(workflow_id="wf-gone", run=0, since=0.0),))
    await kv.create(groups.key(f"{group}-prod"), stale.model_dump_json().encode())
    async with two_engines(nats_url), a_worker(nats_url):
        await start_workflow(clean_nats, "wf-after", definition(group, 1))
        histories = await assert_eventually(
            lambda: ended_all(store, ["wf-after"]), timeout=30, interval=0.5
        )
    assert isinstance(first(histories["wf-after"], _ENDS), WorkflowSucceeded)


async def test_a_grant_never_sent_is_found_by_the_next_look(
    clean_nats: NATS, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine that gave ``wf-late`` its slot died before sending ``admit``: the queue names it
    a holder, and its own group timer finds it so."""
    monkeypatch.setattr(groups, "RECHECK", 0.5)
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    kv = await clean_nats.jetstream().key_value(subjects.KV_CONCURRENCY)
    wf = "wf-late"
    async with two_engines(nats_url) as engines:
        # Blocked first (a holder that is running in the log: the limit is reached) ...
        blocker = "wf-blocker"
        await start_workflow(clean_nats, blocker, definition(group, 1, run="sleep 30"))
        await assert_eventually(lambda: _status(store, blocker, WorkflowAdmitted), timeout=10)
        await start_workflow(clean_nats, wf, definition(group, 1))
        await assert_eventually(lambda: _status(store, wf, WorkflowQueued), timeout=10)
        # ... then handed the slot in the queue alone, as a dying engine would leave it.
        entry = await kv.get(groups.key(f"{group}-prod"))
        queue = GroupQueue.model_validate(orjson.loads(entry.value or b"{}"))
        handed = queue.model_copy(update={"holders": queue.waiting, "waiting": ()})
        await kv.update(groups.key(f"{group}-prod"), handed.model_dump_json().encode(),
                        last=entry.revision)  # fmt: skip
        await assert_eventually(lambda: _status(store, wf, WorkflowAdmitted), timeout=15)
        assert engines  # (both ran throughout)
        await cancel_workflow(clean_nats, blocker)
        await cancel_workflow(clean_nats, wf)


def job_group_definition(group: str, run: str) -> dict[str, Any]:
    concurrency = {"group": group, "limit": 1, "cancel_in_progress": True}
    return {"name": "job-group", "jobs": {"deploy": {"run": run, "concurrency": concurrency}}}


async def test_a_job_group_s_newcomer_cancels_the_older_running_job_and_says_why(
    clean_nats: NATS, nats_url: str
) -> None:
    store, group = EventStore(clean_nats), f"j{uuid.uuid4().hex[:8]}"
    old, new = "wf-old-job", "wf-new-job"
    async with two_engines(nats_url), a_worker(nats_url):
        await start_workflow(clean_nats, old, job_group_definition(group, "sleep 30"))
        await assert_eventually(lambda: _status(store, old, JobStarted), timeout=20)
        await start_workflow(clean_nats, new, job_group_definition(group, "sleep 0.2"))
        histories = await assert_eventually(
            lambda: ended_all(store, [old, new]), timeout=60, interval=0.5
        )
    why = f"superseded by {new}/deploy in concurrency group {group} (cancel_in_progress)"
    requested = first(histories[old], JobCancelRequested)
    assert requested is not None and requested.reason == why
    assert first(histories[old], JobCancelled).reason == why
    ended = first(histories[old], _ENDS)
    assert (
        isinstance(ended, WorkflowCancelled) and ended.reason == f"job deploy was cancelled: {why}"
    )
    assert isinstance(first(histories[new], _ENDS), WorkflowSucceeded)
    new_claim = first(histories[new], JobStarted)
    assert new_claim.started_at >= first(histories[old], JobCancelled).at  # one at a time


async def test_the_queue_survives_every_engine_stopping_and_new_ones_starting(
    clean_nats: NATS, nats_url: str
) -> None:
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    blocker, waiter = "wf-before-restart", "wf-waits-across"
    async with a_worker(nats_url):
        async with two_engines(nats_url):
            await start_workflow(clean_nats, blocker, definition(group, 1, run="sleep 2"))
            await assert_eventually(lambda: _status(store, blocker, JobStarted), timeout=20)
            await start_workflow(clean_nats, waiter, definition(group, 1))
            await assert_eventually(lambda: _status(store, waiter, WorkflowQueued), timeout=10)
        # Every engine is gone while the blocker's job runs on; two new ones take over.
        async with two_engines(nats_url):
            histories = await assert_eventually(
                lambda: ended_all(store, [blocker, waiter]), timeout=60, interval=0.5
            )
    ends = [first(histories[wf], _ENDS) for wf in (blocker, waiter)]
    assert all(isinstance(end, WorkflowSucceeded) for end in ends), ends
    assert first(histories[waiter], WorkflowAdmitted).at >= ends[0].ended_at


async def test_cancel_in_progress_under_a_crowd_keeps_one_running_and_the_newest_wins(
    clean_nats: NATS, nats_url: str
) -> None:
    store, group = EventStore(clean_nats), f"g{uuid.uuid4().hex[:8]}"
    ids = [f"wf-crowd-{n}" for n in range(8)]
    crowd = definition(group, 1, run="sleep 1", cancel_in_progress=True)
    async with two_engines(nats_url), a_worker(nats_url):
        await asyncio.gather(*(start_workflow(clean_nats, wf, crowd) for wf in ids))
        histories = await assert_eventually(lambda: ended_all(store, ids), timeout=90, interval=0.5)
    spans, succeeded = [], []
    for wf, events in histories.items():
        end = first(events, _ENDS)
        if isinstance(end, WorkflowSucceeded):
            succeeded.append(wf)
        else:
            assert isinstance(end, WorkflowCancelled), (wf, end)
            assert end.reason.startswith("superseded by wf-crowd-"), end.reason
        admitted = first(events, WorkflowAdmitted)
        if admitted is not None:
            spans.append((admitted.at, end.ended_at))
    assert most_at_once(spans) <= 1, sorted(spans)
    # The last to enter the queue is superseded by nobody: it runs to its end. (Which one that
    # is the log does not say: engines of different partitions race to enter.)
    assert succeeded, {wf: type(first(events, _ENDS)).__name__ for wf, events in histories.items()}
