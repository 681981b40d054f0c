"""The projector: folds the event log into the views users query, in KV.

Projectors share the partitions of the log as engines do (``events.ownership``, role
``projector``): each owns some, and reads each one's events in order from its stored position
(``projections.feeds``, ``projections.positions``): no consumer state to acknowledge, no message
handed out twice. A batch is grouped by workflow and folded onto the workflow's state in memory
(bounded, least recently used dropped); a workflow not in memory is read from the log once, unless
its first event in hand is its birth. Views are written newest-wins by stream sequence
(``projections.store``), so projecting an event twice (after a takeover, from an older position)
changes nothing.

A running workflow's write is held up to ``settle`` seconds, so that its events of several
batches make one write (``projections.holding``); an ended workflow is written at once. A
partition's position stays below every event whose view is not stored yet, so a projector killed
at any point loses nothing: the next owner projects from there again. Messages that are not events
are skipped and dead-lettered, never fatal.

Rebuild (``catch_up``): a projector for a new generation reads every partition from its start
until it has reached the end of each, then writes everything held and its positions.

Here: the settings, the life cycle, the partitions and generations. A batch is handled in
``projections.batches``, the states in memory and the writing of views in ``projections.writing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from events import subjects
from events.ownership import Ownership
from events.store import EventStore
from events.topology import TOPOLOGY_PATIENCE, patiently
from projections._nats import Direct, Publisher
from projections.batches import ProjectorBatches
from projections.feeds import Feeds
from projections.folding import Folder
from projections.generations import Generations
from projections.holding import Holds
from projections.positions import Positions, pending
from projections.recent import DEFAULT_SIZE, RecentWriter
from projections.store import KV_PREFIX, KV_STREAM, ViewStore, purge_generation
from projections.writing import Tracked
from projections.yielding import check_niceness

_log = structlog.get_logger("jetwork.projector")


@dataclass(frozen=True, kw_only=True)
class ProjectorSettings:
    # Events handled per batch.
    batch: int = 2048
    # Workflows written at once within a batch.
    concurrency: int = 128
    # Folded workflow states kept in memory (least recently used ones are dropped).
    cache_size: int = 20_000
    # Longest wait of an idle loop before it looks again (held views, a new generation).
    poll_interval: float = 1.0
    # Once a batch has begun, how long to wait for more events to join it.
    linger: float = 0.005
    # A running workflow's view is written at most this long after its events: the events of
    # that window are written together (projections.holding). An ended workflow is written at
    # once. 0: write after every batch.
    settle: float = 0.25
    # Events folded and not written at most (beyond it the oldest holds are written).
    hold_limit: int = 65_536
    # How often a live projector looks for a new generation (after a rebuild).
    generation_check: float = 1.0
    # How often the partitions' positions are written (when they moved).
    position_every: float = 0.25
    request_timeout: float = 5.0
    # Largest KV value written in one piece (default: the server's max_payload minus headroom).
    max_value: int | None = None
    # Workflows kept in each recent list (projections.recent); deeper listings scan the index.
    recent_size: int = DEFAULT_SIZE
    # Partition leases (shared with other projectors).
    lease_ttl: float = 4.0
    renew_every: float = 1.0
    # The niceness a projector in a process of its own takes (``projections.yielding``): under
    # contention the engine, workers and nats-server go first. 0: the process's as it is.
    nice: int = 10

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ProjectorSettings:
        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw is None or raw == "":
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None

        return cls(
            batch=int(number("JETWORK_PROJECTOR_BATCH", cls.batch)),
            concurrency=int(number("JETWORK_PROJECTOR_CONCURRENCY", cls.concurrency)),
            cache_size=int(number("JETWORK_PROJECTOR_CACHE_SIZE", cls.cache_size)),
            settle=number("JETWORK_PROJECTOR_SETTLE", cls.settle),
            nice=_niceness(number("JETWORK_PROJECTOR_NICE", cls.nice)),
        )


def _niceness(value: float) -> int:
    if value != int(value):
        raise ValueError(f"JETWORK_PROJECTOR_NICE={value:g}: a whole number")
    return check_niceness(int(value), what="JETWORK_PROJECTOR_NICE")


class Projector(ProjectorBatches):
    """Keeps the views of the current generation up to date (``generation=None``), or fills one
    given generation (a rebuild: ``catch_up``)."""

    def __init__(
        self,
        nc: NATS,
        *,
        settings: ProjectorSettings | None = None,
        generation: int | None = None,
    ) -> None:
        self._nc = nc
        self._settings = settings = settings or ProjectorSettings()
        self._follow = generation is None
        self._generation = generation or 0
        timeout = settings.request_timeout
        self._folder = Folder(EventStore(nc, request_timeout=timeout), nc)
        self._publisher = Publisher(nc, timeout=timeout)
        self._generations = Generations(nc, publisher=self._publisher, timeout=timeout)
        self._store: ViewStore | None = None
        self._recent: RecentWriter | None = None
        self._recent_reads: Direct | None = None
        self._positions: Positions | None = None
        self._positions_kv: KeyValue | None = None
        self._feeds = Feeds(nc)
        self._cache: OrderedDict[str, Tracked] = OrderedDict()
        self._holds = Holds(limit=settings.hold_limit)
        self._settle = settings.settle
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._ownership: Ownership | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._moving = asyncio.Lock()  # partitions opened/shut between batches only
        self.events_seen = 0  # events handled, for statistics
        self.views_created = 0  # workflows given their first view in this generation

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def partitions(self) -> list[int]:
        return self._feeds.partitions

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        # Retried while JetStream does not answer: a projector (re)started while a cluster node
        # is down waits for the leader elections instead of exiting.
        deadline = time.monotonic() + TOPOLOGY_PATIENCE
        if self._follow:
            await patiently(self._ensure_generation, deadline, what="reading the generation")
        await patiently(self._bind, deadline, what="opening the view store")
        self._stopping.clear()
        self._task = asyncio.create_task(self._consume())
        self._ownership = Ownership(
            self._nc,
            f"projector-{uuid.uuid4().hex[:12]}",
            role="projector",
            on_gained=self._gained,
            on_lost=self._lost,
            lease_ttl=self._settings.lease_ttl,
            renew_every=self._settings.renew_every,
        )
        await patiently(self._ownership.start, deadline, what="following partition ownership")
        await self._ownership.wait_cycle()
        _log.info("projector started", generation=self._generation, partitions=self.partitions)

    async def _ensure_generation(self) -> None:
        self._generation = (await self._generations.ensure()).generation

    async def stop(self) -> None:
        """Write everything held and the positions, give the partitions up, and return."""
        self._stopping.set()
        self._feeds.wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ownership is not None:
            await self._ownership.stop()
            self._ownership = None
        await self._feeds.close()
        await self.close()

    async def close(self) -> None:
        """Drop the reply subscriptions of its requests: for a projector on a connection that
        lives on (a rebuild run by a client). It binds again if started later."""
        await self._close_generation()
        await self._folder.close()
        await self._generations.close()
        await self._publisher.close()

    async def _close_generation(self) -> None:
        store, self._store = self._store, None
        reads, self._recent_reads = self._recent_reads, None
        if store is not None:
            await store.close()
        if reads is not None:
            await reads.close()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stopping.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()
        self._feeds.wakeup.set()

    async def catch_up(self, partitions: Iterable[int] | None = None) -> None:
        """Project every partition (or those of ``partitions``: a rebuild shared by processes)
        from its position to the end of the log, then return.

        Writes are held much longer than live: a rebuild writes each workflow about once."""
        if self._follow and not self._generation:
            self._generation = (await self._generations.ensure()).generation
        await self._bind()
        self._settle = max(self._settings.settle, 10.0)
        try:
            for partition in range(subjects.PARTITIONS) if partitions is None else partitions:
                await self._gained(partition)
            while True:
                await self._next_batch_handled()
                if all(self._feeds.caught_up.values()) and not self._feeds.inbox:
                    break
                if not self._feeds.inbox and await self._nothing_left():
                    break
            await self._release(everything=True)
            assert self._positions is not None
            await self._positions.save(force=True)
        finally:
            await self._feeds.close()
            self._settle = self._settings.settle

    async def _nothing_left(self) -> bool:
        """True when no partition has an event after what was handed over (empty partitions
        deliver nothing, so their feeds never say they are caught up)."""
        assert self._positions is not None
        given = {p: self._positions.given_through(p) for p in self._feeds.partitions}
        return await pending(self._nc, given, timeout=self._settings.request_timeout) == 0

    # --- partitions and generations -------------------------------------------------------------

    async def _bind(self) -> None:
        await self._close_generation()
        timeout = self._settings.request_timeout
        self._store = ViewStore(
            self._nc,
            generation=self._generation,
            publisher=self._publisher,
            timeout=timeout,
            max_value=self._settings.max_value,
        )
        self._recent_reads = Direct(self._nc, KV_STREAM, timeout=timeout)
        self._recent = RecentWriter(
            self._recent_reads,
            self._publisher,
            prefix=KV_PREFIX,
            generation=self._generation,
            size=self._settings.recent_size,
        )
        if self._positions_kv is None:
            self._positions_kv = await self._nc.jetstream().key_value(subjects.KV_PROJECTOR)
        self._positions = Positions(
            self._positions_kv, self._generation, every=self._settings.position_every
        )
        self._cache.clear()
        self._holds = Holds(limit=self._settings.hold_limit)

    async def _gained(self, partition: int) -> None:
        async with self._moving:
            assert self._positions is not None
            position = await self._positions.load(partition)
            await self._feeds.open(partition, after=position)

    async def _lost(self, partition: int) -> None:
        async with self._moving:
            await self._feeds.shut(partition)
            for wf in [wf for wf, t in self._cache.items() if t.partition == partition]:
                self._holds.take(wf)
                del self._cache[wf]
            if self._positions is not None:
                self._positions.forget(partition)

    async def _follow_generation(self) -> None:
        try:
            pointer = await self._generations.current()
            if pointer.generation <= self._generation:
                return
            async with self._moving:
                old = self._generation
                partitions = self._feeds.partitions
                await self._feeds.close()
                self._generation = pointer.generation
                await self._bind()
                assert self._positions is not None
                for partition in partitions:
                    await self._feeds.open(partition, after=await self._positions.load(partition))
            _log.info("projector moved to a rebuilt generation", generation=self._generation)
            await drop_generation(self._nc, old, publisher=self._publisher)
        except Exception as exc:
            _log.warning("cannot follow the projection generation", error=str(exc) or repr(exc))

    # --- consuming ----------------------------------------------------------------------------

    async def _consume(self) -> None:
        next_check = time.monotonic() + self._settings.generation_check
        while not self._stopping.is_set():
            if self._follow and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._settings.generation_check
                await self._follow_generation()
            try:
                await self._next_batch_handled()
            except Exception:  # a bug must not stop the projector; the events come again
                _log.exception("batch failed", generation=self._generation)
                await asyncio.sleep(0.1)
        try:
            async with self._moving:
                await self._release(everything=True)  # a graceful stop leaves nothing held
                if self._positions is not None:
                    await self._positions.save(force=True)
        except Exception:
            _log.exception("writing the held views failed", generation=self._generation)


async def drop_generation(nc: NATS, generation: int, *, publisher: Publisher | None = None) -> None:
    """Delete a generation's views, index entries and positions (all idempotent)."""
    await purge_generation(publisher or Publisher(nc), generation)
    with contextlib.suppress(Exception):
        await nc.jetstream().purge_stream(
            f"KV_{subjects.KV_PROJECTOR}",
            subject=f"$KV.{subjects.KV_PROJECTOR}.g{generation}.pos.>",
        )
