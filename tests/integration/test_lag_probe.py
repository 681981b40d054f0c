"""A ``LagProbe`` asked again and again answers what a fresh ``lag`` answers, on a real server:
events appended after it found a partition clean, positions that move on, go back, and another
generation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from nats.aio.client import Client as NATS

from events import subjects
from events.catalog import JobRetryScheduled
from events.store import ActorRef, EventStore
from projections.positions import LagProbe, lag, position_key

_commands = itertools.count()


def two_workflows_in_two_partitions() -> tuple[str, str]:
    ids = (f"lagwf{n}" for n in itertools.count())
    first = next(ids)
    second = next(wf for wf in ids if subjects.partition_of(wf) != subjects.partition_of(first))
    return first, second


async def append(store: EventStore, wf: str, count: int) -> int:
    """``count`` events of ``wf``'s job ``a``; the sequence of the last."""
    actor = ActorRef.job(wf, "a")
    seq = 0
    for _ in range(count):
        event = JobRetryScheduled(
            workflow_id=wf, job="a", attempt=2, delay=1.0, not_before=datetime.now(UTC)
        )
        expected = await store.newest_seq(actor.filter)
        seq = await store.append(
            actor, [event], expected_seq=expected, command_id=f"lag{next(_commands)}"
        )
    return seq


async def test_a_probe_asked_again_answers_as_a_fresh_lag(clean_nats: NATS) -> None:
    store = EventStore(clean_nats)
    kv = await clean_nats.jetstream().key_value(subjects.KV_PROJECTOR)
    first, second = two_workflows_in_two_partitions()
    p1, p2 = subjects.partition_of(first), subjects.partition_of(second)
    probe = LagProbe(clean_nats, timeout=5.0)

    async def agreed(expected: int, generation: int = 1) -> None:
        assert await probe.lag(generation) == expected
        assert await lag(clean_nats, generation) == expected

    async def position(partition: int, seq: int) -> None:
        await kv.put(position_key(1, partition), b"%d" % seq)

    try:
        await agreed(0)
        last_of_first = await append(store, first, 3)
        last_of_second = await append(store, second, 2)
        await agreed(5)
        await position(p1, last_of_first)
        await agreed(2)
        await agreed(2)  # (a partition with events pending is scanned again)
        await position(p2, last_of_second)
        await agreed(0)  # both clean now: the next answers start from here
        await agreed(0)
        await append(store, first, 1)  # after the probe found its partition clean
        await agreed(1)
        last_of_first = await append(store, first, 1)
        await agreed(2)
        await position(p1, last_of_first)
        await agreed(0)
        await position(p1, 0)  # a position that went back: scanned in full again
        await agreed(5)
        await agreed(7, generation=2)  # another generation, no position stored yet
        await agreed(5)
    finally:
        await probe.close()
        await store.close()
