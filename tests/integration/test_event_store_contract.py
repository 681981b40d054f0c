"""The event store contract, run against every backend: JetStream (real server) and memory."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy

from actors.definitions import parse_workflow
from events import subjects
from events.catalog import (
    JobRetryScheduled,
    JobSucceeded,
    WorkflowCancelRequested,
    WorkflowDeleted,
    WorkflowRetried,
    WorkflowStarted,
    WorkflowSucceeded,
)
from events.errors import (
    CommandRefused,
    ConcurrencyConflict,
    PayloadTooLarge,
    StoreError,
    UndecodableEvent,
)
from events.memory_store import MemoryEventStore
from events.store import ActorRef, EventStore
from events.topology import Topology, ensure_topology
from sdk.deletion import delete_workflow

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def retry_event(wf: str, job: str, attempt: int) -> JobRetryScheduled:
    return JobRetryScheduled(workflow_id=wf, job=job, attempt=attempt, delay=1.0, not_before=NOW)


class EventStoreContract:
    """Subclasses provide ``store`` (a fresh, empty log) and ``inject_garbage``."""

    async def inject_garbage(self, store: Any, subject: str, payload: bytes) -> int:
        raise NotImplementedError

    async def test_append_returns_sequence_and_load_returns_events(self, store: Any) -> None:
        actor = ActorRef.job("w1", "a")
        seq = await store.append(
            actor, [retry_event("w1", "a", 1)], expected_seq=0, command_id="c1"
        )
        loaded = await store.load(actor)
        assert [r.seq for r in loaded] == [seq]
        assert loaded[0].event == retry_event("w1", "a", 1)
        assert loaded[0].subject == subjects.job_event("w1", "a", "JobRetryScheduled")

    async def test_stale_expected_sequence_is_a_conflict_with_actual_sequence(
        self, store: Any
    ) -> None:
        actor = ActorRef.job("w1", "a")
        first = await store.append(
            actor, [retry_event("w1", "a", 1)], expected_seq=0, command_id="c1"
        )
        with pytest.raises(ConcurrencyConflict) as caught:
            await store.append(actor, [retry_event("w1", "a", 2)], expected_seq=0, command_id="c2")
        assert caught.value.actual_seq == first
        assert len(await store.load(actor)) == 1

    async def test_retried_append_with_same_command_id_is_harmless(self, store: Any) -> None:
        actor = ActorRef.job("w1", "a")
        events = [retry_event("w1", "a", 1)]
        first = await store.append(actor, events, expected_seq=0, command_id="same")
        again = await store.append(actor, events, expected_seq=0, command_id="same")
        assert again == first
        assert len(await store.load(actor)) == 1

    async def test_retried_batch_with_same_command_id_is_harmless(self, store: Any) -> None:
        actor = ActorRef.job("w1", "a")
        events = [retry_event("w1", "a", n) for n in (1, 2, 3)]
        first = await store.append(actor, events, expected_seq=0, command_id="b")
        again = await store.append(actor, events, expected_seq=0, command_id="b")
        assert again == first
        assert [r.event.attempt for r in await store.load(actor)] == [1, 2, 3]

    async def test_multi_event_append_is_atomic(self, store: Any) -> None:
        actor = ActorRef.job("w1", "a")
        await store.append(actor, [retry_event("w1", "a", 1)], expected_seq=0, command_id="c1")
        batch = [retry_event("w1", "a", n) for n in (7, 8, 9)]
        with pytest.raises(ConcurrencyConflict):
            await store.append(actor, batch, expected_seq=0, command_id="stale")
        assert [r.event.attempt for r in await store.load(actor)] == [1]
        last = await store.append(actor, batch, expected_seq=1, command_id="fresh")
        loaded = await store.load(actor)
        assert [r.event.attempt for r in loaded] == [1, 7, 8, 9]
        assert loaded[-1].seq == last

    async def test_actors_are_independent_and_history_keeps_log_order(self, store: Any) -> None:
        a, b, wf = ActorRef.job("w1", "a"), ActorRef.job("w1", "b"), ActorRef.workflow("w1")
        await store.append(a, [retry_event("w1", "a", 1)], expected_seq=0, command_id="1")
        await store.append(b, [retry_event("w1", "b", 1)], expected_seq=0, command_id="2")
        cancel = WorkflowCancelRequested(workflow_id="w1", requested_at=NOW)
        await store.append(wf, [cancel], expected_seq=0, command_id="3")
        await store.append(a, [retry_event("w1", "a", 2)], expected_seq=1, command_id="4")
        await store.append(
            ActorRef.job("w2", "a"), [retry_event("w2", "a", 1)], expected_seq=0, command_id="5"
        )
        history = await store.history("w1")
        assert [r.subject.split(".", 3)[3] for r in history] == [
            "job.a.JobRetryScheduled",
            "job.b.JobRetryScheduled",
            "wf.WorkflowCancelRequested",
            "job.a.JobRetryScheduled",
        ]
        assert [r.seq for r in history] == sorted(r.seq for r in history)
        assert await store.last_seq(a) == history[-1].seq

    async def test_replay_from_a_sequence(self, store: Any) -> None:
        actor = ActorRef.job("w1", "a")
        seqs = []
        for n in range(1, 6):
            expected = seqs[-1] if seqs else 0
            seqs.append(
                await store.append(
                    actor, [retry_event("w1", "a", n)], expected_seq=expected, command_id=f"c{n}"
                )
            )
        tail = await store.load(actor, from_seq=seqs[2])
        assert [r.event.attempt for r in tail] == [3, 4, 5]

    async def test_long_replay_is_complete_and_ordered(self, store: Any) -> None:
        actor = ActorRef.job("w1", "long")
        last = 0
        for chunk in range(0, 2500, 50):
            events = [retry_event("w1", "long", n) for n in range(chunk, chunk + 50)]
            last = await store.append(actor, events, expected_seq=last, command_id=f"k{chunk}")
        loaded = await store.load(actor)
        assert [r.event.attempt for r in loaded] == list(range(2500))

    @pytest.mark.parametrize("count", [1, 2, 9, 10, 1_201])
    async def test_interleaved_actors_replay_exactly_their_own_events(
        self, store: Any, count: int
    ) -> None:
        # Every read path of the JetStream reader (first + pending, single gets, exact batches
        # of more than one request) on events spread among another actor's.
        mine, other = ActorRef.job("w1", "mine"), ActorRef.job("w1", "other")
        last = {mine.filter: 0, other.filter: 0}
        seqs: list[int] = []
        for n in range(count):
            for actor in (other, mine) if n % 3 else (mine, other):
                seq = await store.append(
                    actor,
                    [retry_event("w1", actor.filter.split(".")[4], n)],
                    expected_seq=last[actor.filter],
                    command_id=f"{actor.filter}-{n}",
                )
                last[actor.filter] = seq
                if actor is mine:
                    seqs.append(seq)
        for start in {1, seqs[0], seqs[len(seqs) // 2], seqs[-1], seqs[-1] + 1}:
            loaded = await store.load(mine, from_seq=start)
            assert [r.seq for r in loaded] == [seq for seq in seqs if seq >= start]
            assert [r.event.attempt for r in loaded] == [
                n for n, seq in enumerate(seqs) if seq >= start
            ]

    async def test_unknown_event_type_is_a_clear_error_with_subject_and_sequence(
        self, store: Any
    ) -> None:
        subject = subjects.job_event("w1", "a", "Exploded")
        seq = await self.inject_garbage(store, subject, b'{"type": "Exploded"}')
        with pytest.raises(UndecodableEvent) as caught:
            await store.history("w1")
        assert caught.value.seq == seq
        assert caught.value.subject == subject
        assert "unknown event type 'Exploded'" in str(caught.value)

    async def test_malformed_payload_is_a_clear_error(self, store: Any) -> None:
        await self.inject_garbage(
            store,
            subjects.job_event("w1", "a", "JobSucceeded"),
            b'{"type": "JobSucceeded", "attempt": "x"',
        )
        with pytest.raises(UndecodableEvent, match="not valid JSON"):
            await store.load(ActorRef.job("w1", "a"))

    async def test_oversized_payload_is_refused_and_nothing_is_appended(self, store: Any) -> None:
        actor = ActorRef.job("w1", "a")
        huge = JobSucceeded(
            workflow_id="w1",
            job="a",
            attempt=1,
            epoch=1,
            outputs={"blob": "x" * (2 << 20)},
            ended_at=NOW,
        )
        with pytest.raises(PayloadTooLarge, match=r"JobSucceeded for evt\.\d+\.w1\.job\.a\."):
            await store.append(actor, [huge], expected_seq=0, command_id="big")
        assert await store.load(actor) == []

    async def test_event_for_another_actor_is_refused(self, store: Any) -> None:
        with pytest.raises(ValueError, match="does not belong"):
            await store.append(
                ActorRef.job("w1", "a"), [retry_event("w1", "b", 1)], expected_seq=0, command_id="x"
            )

    async def test_concurrent_writers_exactly_one_wins_each_sequence(self, store: Any) -> None:
        actor = ActorRef.job("w1", "race")
        writers, per_writer = 4, 15
        conflicts = 0

        async def writer(name: int) -> None:
            nonlocal conflicts
            for n in range(per_writer):
                while True:
                    expected = await store.last_seq(actor)
                    await asyncio.sleep(0)  # let the other writers read the same sequence
                    try:
                        await store.append(
                            actor,
                            [retry_event("w1", "race", name * 1000 + n)],
                            expected_seq=expected,
                            command_id=f"w{name}-{n}",
                        )
                        break
                    except ConcurrencyConflict:
                        conflicts += 1

        await asyncio.gather(*(writer(name) for name in range(writers)))
        loaded = await store.load(actor)
        attempts = [r.event.attempt for r in loaded]
        assert len(attempts) == writers * per_writer
        assert len(set(attempts)) == len(attempts)  # no event written twice
        for name in range(writers):  # each writer's events in its own order
            mine = [a for a in attempts if a // 1000 == name]
            assert mine == sorted(mine)
        assert conflicts > 0


class TestMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> MemoryEventStore:
        return MemoryEventStore()

    async def inject_garbage(self, store: Any, subject: str, payload: bytes) -> int:
        seq: int = store.inject_raw(subject, payload)
        return seq


class TestJetStreamEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, clean_nats: NATS) -> EventStore:
        return EventStore(clean_nats)

    async def inject_garbage(self, store: Any, subject: str, payload: bytes) -> int:
        ack = await store._nc.jetstream().publish(subject, payload)
        return int(ack.seq)

    async def test_subscribe_receives_new_events(self, store: EventStore) -> None:
        received: list[int] = []
        ready = asyncio.Event()

        async def tail() -> None:
            async for recorded in store.subscribe(subjects.workflow_events("w9")):
                received.append(recorded.event.attempt)  # type: ignore[attr-defined]
                if len(received) == 3:
                    ready.set()
                    return

        task = asyncio.create_task(tail())
        actor = ActorRef.job("w9", "a")
        last = 0
        # The ordered consumer starts at "new": publish until the tail has seen three events.
        for n in range(1, 200):
            last = await store.append(
                actor, [retry_event("w9", "a", n)], expected_seq=last, command_id=f"s{n}"
            )
            if ready.is_set():
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(task, 5)
        assert received == sorted(received)
        assert len(received) == 3

    async def test_subscribe_from_sequence_replays_then_skips_garbage(
        self, store: EventStore
    ) -> None:
        actor = ActorRef.job("w8", "a")
        first = await store.append(
            actor, [retry_event("w8", "a", 1)], expected_seq=0, command_id="1"
        )
        await self.inject_garbage(store, subjects.job_event("w8", "a", "Garbage"), b"\x00\x01")
        await store.append(
            actor, [retry_event("w8", "a", 2)], expected_seq=first + 1, command_id="2"
        )
        seen = []
        async for recorded in store.subscribe(subjects.workflow_events("w8"), from_seq=first):
            seen.append(recorded.event.attempt)  # type: ignore[attr-defined]
            if len(seen) == 2:
                break
        assert seen == [1, 2]

    async def test_event_stream_refuses_deleting_single_messages(
        self, store: EventStore, clean_nats: NATS
    ) -> None:
        js = clean_nats.jetstream()
        actor = ActorRef.job("w1", "a")
        seq = await store.append(actor, [retry_event("w1", "a", 1)], expected_seq=0, command_id="c")
        with pytest.raises(Exception, match="delete"):
            await js.delete_msg("JW_EVENTS", seq)
        assert len(await store.load(actor)) == 1
        config = (await js.stream_info("JW_EVENTS")).config
        # Purge is the deletion's path (docs/reliability.md, "Deleting workflows"); nothing
        # else ever removes an event, and no limit or discard policy drops history.
        assert (config.deny_delete, config.deny_purge) == (True, False)
        assert (config.discard, config.max_age, config.max_msgs) == (DiscardPolicy.NEW, 0, -1)

    async def test_deletion_purges_one_workflow_before_its_tombstone_only(
        self, store: EventStore, clean_nats: NATS
    ) -> None:
        ended = await _ended_workflow(store, "gone")
        kept = await _ended_workflow(store, "kept")
        deleted = await delete_workflow(clean_nats, store, "gone", by="ops", clock=lambda: NOW)
        history = await store.history("gone")
        assert [r.event.event_type for r in history] == ["WorkflowDeleted"]
        assert history[0].seq == deleted.tombstone_seq > max(ended)
        assert [r.seq for r in await store.history("kept")] == kept

    async def test_an_old_events_stream_denying_purge_keeps_it_and_deletion_says_why(
        self, store: EventStore, clean_nats: NATS
    ) -> None:
        # nats-server refuses to lift deny_purge (10052): a stream made by an older jetwork
        # starts as before, and deleting from it is refused with the reason and the way out.
        js = clean_nats.jetstream()
        await js.delete_stream("JW_EVENTS")
        await js.add_stream(replace(Topology().events(), deny_purge=True))
        await ensure_topology(js)
        assert (await js.stream_info("JW_EVENTS")).config.deny_purge is True
        kept = await _ended_workflow(store, "old")
        with pytest.raises(StoreError, match="created denying purge"):
            await delete_workflow(clean_nats, store, "old", by="ops", clock=lambda: NOW)
        assert [r.seq for r in await store.history("old")] == kept


async def _ended_workflow(store: EventStore, wf: str) -> list[int]:
    definition = parse_workflow({"name": "n", "jobs": {"a": {"run": "true"}}})
    actor = ActorRef.workflow(wf)
    first = await store.append(
        actor,
        [WorkflowStarted(workflow_id=wf, definition=definition, started_at=NOW)],
        expected_seq=0,
        command_id=f"{wf}-start",
    )
    job = await store.append(
        ActorRef.job(wf, "a"), [retry_event(wf, "a", 1)], expected_seq=0, command_id=f"{wf}-a"
    )
    last = await store.append(
        actor,
        [WorkflowSucceeded(workflow_id=wf, ended_at=NOW)],
        expected_seq=first,
        command_id=f"{wf}-end",
    )
    return [first, job, last]


async def test_reused_command_id_for_another_actor_is_refused(clean_nats: NATS) -> None:
    store = EventStore(clean_nats)
    await store.append(
        ActorRef.job("w1", "a"), [retry_event("w1", "a", 1)], expected_seq=0, command_id="dup"
    )
    with pytest.raises(StoreError, match="command ids must be unique"):
        await store.append(
            ActorRef.job("w1", "b"), [retry_event("w1", "b", 1)], expected_seq=0, command_id="dup"
        )


class _ReopeningFirst(EventStore):
    """A real store on which an operator's retry lands just before the deletion's first append
    (what a concurrent `jetwork retry` between the deletion's read and its append does)."""

    reopened = False

    async def append(self, actor: ActorRef, events: Any, **kw: Any) -> int:
        if not self.reopened and isinstance(events[0], WorkflowDeleted):
            self.reopened = True
            retried = WorkflowRetried(workflow_id="race", by="ops", jobs=("a",), at=NOW)
            await super().append(actor, [retried], expected_seq=kw["expected_seq"], command_id="r")
        return await super().append(actor, events, **kw)


async def test_a_workflow_reopened_during_its_deletion_is_refused_and_kept(
    clean_nats: NATS,
) -> None:
    store = _ReopeningFirst(clean_nats)
    await _ended_workflow(store, "race")
    with pytest.raises(CommandRefused, match="it is running"):
        await delete_workflow(clean_nats, store, "race", by="ops", clock=lambda: NOW)
    history = [r.event.event_type for r in await store.history("race")]
    assert history == [
        "WorkflowStarted",
        "JobRetryScheduled",
        "WorkflowSucceeded",
        "WorkflowRetried",
    ]
