"""An append whose acknowledgement was lost is retried with the same msg ids and recognised as
our own write, also when the replica that answers the read-back lags behind.

A retry finds the first attempt's message in one of two ways: a standalone server checks the CAS
before de-duplication and answers "wrong last sequence: N" (N is our message); a clustered one
de-duplicates first and answers "duplicate" with N. Either way the store reads message N back to
compare msg ids. On a replicated stream that read may come from a follower which has not applied
N yet; the store must wait it out instead of calling our own write a conflict (standalone path)
or a collision with someone else's msg id (clustered path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from events.catalog import JobRetryScheduled
from events.connection import NatsSettings, connect
from events.direct_get import DirectReader, StoredMessage
from events.store import ActorRef, EventStore
from events.topology import Topology, ensure_topology
from tests.cluster import LocalCluster

LAG = 0.3


class LaggingReader(DirectReader):
    """Direct gets see the stream as it was ``LAG`` seconds ago, like a follower behind."""

    hidden = 0

    async def batch(
        self, request: dict[str, Any], convert: Callable[[StoredMessage], Any] | None = None
    ) -> tuple[list[Any], int]:
        # (items converted as they arrived: StoredMessage or RecordedEvent, both with a time)
        messages, pending = await super().batch(request, convert or (lambda message: message))
        horizon = datetime.now(UTC).timestamp() - LAG
        visible = [m for m in messages if m.time.timestamp() <= horizon]
        if len(visible) < len(messages):
            LaggingReader.hidden += len(messages) - len(visible)
            pending = 0
        return visible, pending


def lagging(nc: NATS) -> EventStore:
    store = EventStore(nc)
    store._reader = LaggingReader(nc, stream=store._stream, timeout=5.0)
    return store


def event(wf: str) -> JobRetryScheduled:
    return JobRetryScheduled(
        workflow_id=wf, job="a", attempt=2, delay=1.0, not_before=datetime.now(UTC)
    )


async def _append_twice(store: EventStore, wf: str) -> tuple[int, int]:
    actor = ActorRef.job(wf, "a")
    first = await store.append(actor, [event(wf)], expected_seq=0, command_id=f"c-{wf}")
    # The same append again: what a retry after a lost ack sends.
    again = await store.append(actor, [event(wf)], expected_seq=0, command_id=f"c-{wf}")
    return first, again


async def test_standalone_a_retry_answered_with_a_conflict_is_recognised(
    clean_nats: NATS,
) -> None:
    store = lagging(clean_nats)
    before = LaggingReader.hidden
    first, again = await _append_twice(store, "wf-lost-ack-1")
    assert again == first
    assert LaggingReader.hidden > before, "the read-back never lagged: the test tests nothing"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path) as running:
        yield running


@pytest.fixture
async def cluster_nc(cluster: LocalCluster) -> AsyncIterator[NATS]:
    nc = await connect(NatsSettings(url=cluster.url, name="lost-ack-test"))
    try:  # closed even when the set-up fails: a client left reconnecting hangs the session
        await ensure_topology(nc.jetstream(), Topology(replicas=3))
        yield nc
    finally:
        await nc.close()


@pytest.mark.cluster
async def test_replicated_a_retry_answered_as_a_duplicate_is_recognised(cluster_nc: NATS) -> None:
    store = lagging(cluster_nc)
    before = LaggingReader.hidden
    first, again = await _append_twice(store, "wf-lost-ack-2")
    assert again == first
    assert LaggingReader.hidden > before, "the read-back never lagged: the test tests nothing"
