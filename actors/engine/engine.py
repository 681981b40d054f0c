"""The engine: owns partitions of workflows and decides for them from state held in memory.

Ownership (``ownership.py``) gives each engine process a share of the ``PARTITIONS`` partitions;
for each one it pulls the partition's commands and job events (``inbox.py``). One loop takes what
has arrived from all of them and handles it as a batch (``batch.py``): grouped by workflow,
folded and decided on the state in memory (``reactions.react``), appended together (one round
trip per stage for the whole batch), and only then acknowledged. A killed engine loses nothing:
the next owner of its partitions gets every unacknowledged message again, and everything is
idempotent (CAS, state checks, msg-id de-dup).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import structlog
from nats.aio.client import Client as NATS

from actors.engine.batch import Batch, Context
from actors.engine.definition_cache import DefinitionCache
from actors.engine.groups import Groups
from actors.engine.inbox import Inbox
from actors.engine.labelsets import LabelSets
from actors.engine.quotas import Quotas
from actors.engine.settings import EngineSettings
from actors.engine.states import States
from actors.engine.timers import AnyTimer, Timers
from events import subjects
from events.ownership import Ownership
from events.pipeline import Pipeline
from events.store import EventStore
from events.topology import TOPOLOGY_PATIENCE, patiently
from telemetry import metrics

_log = structlog.get_logger("jetwork.engine")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _decision_ids(engine_id: str) -> Iterator[str]:
    """``<engine>.<n>``: unique per engine process (its id is random), with no uuid per decision."""
    prefix = engine_id.removeprefix("engine-")
    return (f"{prefix}.{n}" for n in itertools.count())


class Engine:
    def __init__(
        self,
        nc: NATS,
        *,
        settings: EngineSettings | None = None,
        clock: Clock = utc_now,
        engine_id: str | None = None,
    ) -> None:
        self._nc = nc
        self._settings = settings = settings or EngineSettings()
        self.engine_id = engine_id or f"engine-{uuid.uuid4().hex[:12]}"
        self._store = EventStore(nc)
        self._pipeline = Pipeline(nc, self._store)
        self._states = States(nc, self._store, size=settings.cache_size)
        self._inbox = Inbox(nc, settings)
        self._fired: list[AnyTimer] = []
        self._timers = Timers(nc, on_fire=self._on_timer, horizon=self._settings.in_process_horizon)
        self._ownership = Ownership(
            nc,
            self.engine_id,
            on_gained=self._inbox.open,
            on_lost=self._lost,
            lease_ttl=settings.lease_ttl,
            renew_every=settings.renew_every,
        )
        self._stopping = asyncio.Event()
        self._groups = Groups(nc, self._store)
        self._context = Context(
            nc=nc,
            states=self._states,
            definitions=DefinitionCache(),
            labelsets=LabelSets(nc),
            pipeline=self._pipeline,
            timers=self._timers,
            groups=self._groups,
            holds=self._ownership.holds,
            clock=clock,
            stopping=self._stopping.is_set,
            decision_id=functools.partial(next, _decision_ids(self.engine_id)),
            quotas=Quotas(nc, self._store),
        )
        self._loop_task: asyncio.Task[None] | None = None
        metrics.ENGINE_PARTITIONS.set_function(lambda: len(self._ownership.partitions))

    @property
    def ownership(self) -> Ownership:
        return self._ownership

    @property
    def states(self) -> States:
        return self._states

    # --- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        await self._pipeline.start()
        # Retried while JetStream does not answer: an engine (re)started while a cluster node is
        # down waits for the leader elections instead of exiting.
        deadline = time.monotonic() + TOPOLOGY_PATIENCE
        await patiently(self._groups.start, deadline, what="opening the concurrency groups")
        self._loop_task = asyncio.create_task(self._process_forever())
        await patiently(self._ownership.start, deadline, what="following partition ownership")
        await self._ownership.wait_cycle()  # the partitions it can take are its own now
        _log.info("engine started", engine=self.engine_id, partitions=self._ownership.partitions)

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        """Finish the batch in hand, give every partition up, and return."""
        self._stopping.set()
        self._inbox.wake()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        await self._ownership.stop()
        await self._inbox.close()
        self._timers.close()
        await self._pipeline.close()
        await self._store.close()

    async def abandon(self) -> None:
        """Stop dead, giving nothing up, as a killed process would: no more pulls, decisions,
        renewals or acks; its leases lapse and other engines take its partitions (tests)."""
        self._stopping.set()
        self._ownership.abandon()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        await self._inbox.close()
        self._timers.close()

    async def _lost(self, partition: int) -> None:
        # First, before any await: a batch in flight must not keep a state of it any more.
        self._states.give_up(partition)

        def keep(wf_id: str) -> bool:
            return subjects.partition_of(wf_id) != partition

        self._timers.forget(keep)
        await self._inbox.shut(partition)
        self._states.give_up(partition)  # and what a batch kept while the consumers shut
        # No new stage starts for it now (``Batch._owned``); one already sent must land before
        # the lease's key is deleted, or it would land while another engine owns the partition.
        await self._pipeline.settled(timeout=self._settings.lease_ttl)

    def _on_timer(self, timer: AnyTimer) -> None:
        self._fired.append(timer)
        self._inbox.wake()

    # --- the loop --------------------------------------------------------------------------------

    async def _process_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = await self._inbox.next_batch(self._settings.batch)
                fired, self._fired = self._fired, []
                if not messages and not fired:
                    continue
                started = time.perf_counter()
                batch = Batch(self._context)
                try:
                    await batch.take(messages, fired)
                    await batch.settle()
                except Exception:
                    batch.forget()  # its messages come back behind newer ones: read them anew
                    raise
                metrics.ENGINE_BATCH_SECONDS.observe(time.perf_counter() - started)
                metrics.ENGINE_BATCH_MESSAGES.observe(len(messages) + len(fired))
            except Exception:  # a bug must not stop the engine; unacked messages come back
                _log.exception("batch failed")
                await asyncio.sleep(0.1)
