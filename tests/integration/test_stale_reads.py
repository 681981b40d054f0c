"""The engine on a store whose reads lag behind its writes, as a stream follower's do.

On a replicated stream with ``allow_direct`` every replica answers direct gets, so a read right
after an append may come from a follower that has not applied it yet: reads are eventually
consistent (nats-server 2.15 has no read-after-write option). Found by the chaos run
(``tests/chaos.py``) with the engine of wave 1, which read a workflow back for every decision.
The partition-owning engine reads a workflow only when it does not hold it in memory (after a
takeover, an eviction, a conflict): here it holds one workflow at most, so it reads all the
time, through a follower that misses its latest appends. Its decisions on such a state conflict
(CAS) until the follower catches up; nothing may be lost or done twice.

``LaggingStore`` hides every message younger than ``lag`` seconds (by its stream timestamp): a
follower that far behind. The engine must still finish every workflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NATS

from events import subjects
from events.direct_get import DirectReader
from events.store import EventStore, StoredMessage
from tests.engine_harness import (
    InTestRunner,
    RecordingDispatcher,
    ended,
    running_engine,
    start_workflow,
    succeed,
)
from tests.eventually import assert_eventually
from tests.faults import chain

LAG = 0.3


class LaggingReader(DirectReader):
    """Batched reads see the stream as it was ``lag`` seconds ago (a follower that far behind)."""

    def __init__(self, nc: NATS, *, lag: float) -> None:
        super().__init__(nc, stream=subjects.EVENTS_STREAM, timeout=5.0)
        self.lag = lag
        self.hidden = 0

    async def batch(
        self, request: dict[str, Any], convert: Callable[[StoredMessage], Any] | None = None
    ) -> tuple[list[Any], int]:
        # (items converted as they arrived: StoredMessage or RecordedEvent, both with a time)
        messages, pending = await super().batch(request, convert or (lambda message: message))
        if "batch" not in request:
            return messages, pending
        horizon = datetime.now(UTC).timestamp() - self.lag
        visible = [m for m in messages if m.time.timestamp() <= horizon]
        if len(visible) < len(messages):
            self.hidden += len(messages) - len(visible)
            pending = 0  # a follower knows nothing beyond what it has
        return visible, pending


class LaggingStore(EventStore):
    """An event store whose batched reads go through a ``LaggingReader``; appends go through."""

    def __init__(self, nc: NATS, *, lag: float) -> None:
        super().__init__(nc)
        self.lagging = LaggingReader(nc, lag=lag)
        self._reader = self.lagging

    @property
    def hidden(self) -> int:
        return self.lagging.hidden


async def test_the_engine_finishes_workflows_when_its_reads_lag_its_writes(
    clean_nats: NATS,
) -> None:
    dispatcher = RecordingDispatcher()
    engine = await running_engine(clean_nats, dispatcher, cache_size=1)
    lagging = LaggingStore(clean_nats, lag=LAG)
    engine.states._store = lagging  # the engine reads through a lagging follower
    runner = InTestRunner(EventStore(clean_nats), dispatcher, succeed).start()
    store = EventStore(clean_nats)
    ids = [f"wf-lag-{n}" for n in range(3)]
    began = time.monotonic()
    try:
        for wf in ids:
            await start_workflow(clean_nats, wf, chain(4))

        async def all_ended() -> bool:
            return all([ended(await store.history(wf)) for wf in ids])

        await assert_eventually(all_ended, timeout=30, interval=0.1, message="a workflow stalled")
    finally:
        await runner.stop()
        await engine.stop()
    assert lagging.hidden > 0, "the store never lagged: the test tests nothing"
    for wf in ids:
        assert ended(await store.history(wf)) == "WorkflowSucceeded"
    print(f"\n3 chains of 4 through a store lagging {LAG}s: {time.monotonic() - began:.1f}s")
