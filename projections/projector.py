"""The projector: folds the event log into the views users query, in KV.

One durable pull consumer per generation (``projector-g<n>``, ``evt.>``, see
``projections.generations``). Each batch is grouped by workflow; a workflow's state is folded
incrementally from the log itself (``read_tolerant`` from the cached state's stream sequence on),
not from the batch, so events split across batches, redelivered or delivered out of order all
end in the same state: the fold of the workflow's whole history. Folded states are cached
(bounded, least recently used dropped); a miss replays the workflow's history once.

Views are written newest-wins by stream sequence (``projections.store``), and messages are acked
only once their workflow's view is stored, so the projector can be killed at any point and
restarted: it converges to the same views. A running workflow's write is held up to ``settle``
seconds so that its events of several batches make one write (``projections.holding``); an ended
workflow is written at once. Messages that are not events are skipped and logged, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from actors.workflow import WorkflowState
from events import subjects
from events.errors import StoreError
from events.pull import PullFeed
from events.store import EventStore
from projections._nats import Direct, Publisher, pull_now
from projections.folding import Continuity, Folder, is_birth
from projections.generations import Generations, consumer_name
from projections.holding import Holds
from projections.index import micros
from projections.recent import DEFAULT_SIZE, RecentWriter
from projections.store import KV_PREFIX, KV_STREAM, ViewStore, Written, purge_generation
from projections.views import workflow_view

_log = structlog.get_logger("jetwork.projector")


@dataclass(frozen=True, kw_only=True)
class ProjectorSettings:
    # Messages pulled per batch.
    batch: int = 512
    # Workflows projected at once within a batch.
    concurrency: int = 128
    # How long a batch may take before JetStream redelivers its messages.
    ack_wait: float = 30.0
    # Folded workflow states kept in memory (least recently used ones are dropped).
    cache_size: int = 20_000
    # Wait of an idle pull before asking again.
    poll_interval: float = 1.0
    # Once a batch has begun, how long to wait for more messages to join it: fewer, larger
    # batches write each busy workflow's view once for many of its events.
    linger: float = 0.01
    # A running workflow's view is written at most this long after its events: the events of
    # that window are written together (projections.holding). An ended workflow is written at
    # once. 0: write after every batch. Capped at a quarter of ``ack_wait``.
    settle: float = 0.25
    # Messages held unacked at most (beyond it the oldest holds are written).
    hold_limit: int = 16_384
    # How often a live projector looks for a new generation (after a rebuild).
    generation_check: float = 1.0
    # Durable consumer names are <prefix>-g<generation>.
    consumer_prefix: str = "projector"
    request_timeout: float = 5.0
    # Largest KV value written in one piece (default: the server's max_payload minus headroom).
    max_value: int | None = None
    # Workflows kept in each recent list (projections.recent); deeper listings scan the index.
    recent_size: int = DEFAULT_SIZE

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
            ack_wait=number("JETWORK_PROJECTOR_ACK_WAIT", cls.ack_wait),
            cache_size=int(number("JETWORK_PROJECTOR_CACHE_SIZE", cls.cache_size)),
            settle=number("JETWORK_PROJECTOR_SETTLE", cls.settle),
        )


@dataclass(frozen=True, slots=True)
class _Tracked:
    state: WorkflowState
    written: Written
    epoch: int  # of projections.folding.Continuity, when the state was last brought up to date


class Projector:
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
        self._settings = settings or ProjectorSettings()
        self._follow = generation is None
        self._generation = generation or 0
        timeout = self._settings.request_timeout
        self._folder = Folder(EventStore(nc, request_timeout=timeout), nc)
        self._continuity = Continuity()
        self._publisher = Publisher(nc, timeout=timeout)
        self._generations = Generations(nc, publisher=self._publisher, timeout=timeout)
        self._store: ViewStore | None = None
        self._recent: RecentWriter | None = None
        self._recent_reads: Direct | None = None
        self._feed: PullFeed | None = None
        self._cache: OrderedDict[str, _Tracked] = OrderedDict()
        self._holds = Holds(limit=self._settings.hold_limit)
        # Live: at most a quarter of ack_wait; catch_up holds longer while it runs.
        self._live_settle = min(self._settings.settle, self._settings.ack_wait / 4)
        self._settle = self._live_settle
        self._limit = asyncio.Semaphore(self._settings.concurrency)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.events_seen = 0  # messages handled (acked), for statistics
        self.views_created = 0  # workflows given their first view in this generation

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def consumer(self) -> str:
        return consumer_name(self._settings.consumer_prefix, self._generation)

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._follow:
            self._generation = (await self._generations.ensure()).generation
        await self._bind()
        self._feed = await self._open_feed()
        self._stopping.clear()
        self._task = asyncio.create_task(self._consume())
        _log.info("projector started", generation=self._generation, consumer=self.consumer)

    async def stop(self) -> None:
        """Finish the batch in hand, then return. Unacked messages are redelivered later."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await feed.stop()
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

    async def catch_up(self) -> None:
        """Project everything the consumer holds, then return (nothing stays requested).

        Writes are held longer than live (a third of ``ack_wait``): a rebuild writes each
        workflow about once, not once per batch that holds some of its events.
        """
        if self._follow and not self._generation:
            self._generation = (await self._generations.ensure()).generation
        await self._bind()
        self._settle = self._settings.ack_wait / 3
        js = self._nc.jetstream()
        try:
            while True:
                try:
                    messages = await pull_now(
                        self._nc,
                        stream=subjects.EVENTS_STREAM,
                        consumer=self.consumer,
                        # A backlog: fewer, larger batches, with room left under max_ack_pending
                        # beside the held messages (acks reach the consumer a little late).
                        batch=self._settings.batch * 2,
                        timeout=self._settings.request_timeout,
                    )
                except StoreError as exc:  # nothing came: write what is held, then look again
                    _log.warning("pull failed", consumer=self.consumer, error=str(exc))
                    messages = []
                if messages:
                    await self._handle(messages)
                    continue
                await self._release(everything=True)
                info = await js.consumer_info(subjects.EVENTS_STREAM, self.consumer)
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
                await asyncio.sleep(0.05)  # naked messages come back after their delay
        finally:
            self._settle = self._live_settle

    # --- consuming ----------------------------------------------------------------------------

    async def _bind(self) -> None:
        config = ConsumerConfig(
            name=self.consumer,
            durable_name=self.consumer,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._settings.ack_wait,
            max_deliver=-1,
            # Room for the held messages besides the batches in flight.
            max_ack_pending=max(1000, self._settings.batch * 8) + self._settings.hold_limit,
            filter_subject=subjects.EVENTS_ALL,
        )
        await self._nc.jetstream().add_consumer(subjects.EVENTS_STREAM, config)
        await self._close_generation()
        self._store = ViewStore(
            self._nc,
            generation=self._generation,
            publisher=self._publisher,
            timeout=self._settings.request_timeout,
            max_value=self._settings.max_value,
        )
        self._recent_reads = Direct(self._nc, KV_STREAM, timeout=self._settings.request_timeout)
        self._recent = RecentWriter(
            self._recent_reads,
            self._publisher,
            prefix=KV_PREFIX,
            generation=self._generation,
            size=self._settings.recent_size,
        )
        self._cache.clear()
        # Held messages of a former generation's consumer are dropped with it.
        self._holds = Holds(limit=self._settings.hold_limit)
        self._continuity = Continuity()

    async def _open_feed(self) -> PullFeed:
        feed = PullFeed(
            self._nc,
            stream=subjects.EVENTS_STREAM,
            consumer=self.consumer,
            window=self._settings.batch * 2,
        )
        await feed.start()
        return feed

    async def _consume(self) -> None:
        poll = self._settings.poll_interval
        next_check = time.monotonic() + self._settings.generation_check
        while not self._stopping.is_set():
            if self._follow and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._settings.generation_check
                await self._follow_generation()
            feed = self._feed
            assert feed is not None
            try:
                # The outer timeout is a watchdog: a pull must never hang the projector.
                messages = await asyncio.wait_for(self._next_batch(feed), poll + 5)
            except Exception as exc:  # connection trouble: keep trying, never die
                _log.warning("pull failed", consumer=self.consumer, error=str(exc) or repr(exc))
                await asyncio.sleep(poll)
                continue
            try:
                if messages:
                    await self._handle(messages)
                else:
                    await self._release()
            except Exception:  # a bug must not stop the projector; the messages come back
                _log.exception("batch failed", consumer=self.consumer, size=len(messages))
        try:
            await self._release(everything=True)  # a graceful stop leaves nothing held
        except Exception:
            _log.exception("writing the held views failed", consumer=self.consumer)

    async def _next_batch(self, feed: PullFeed) -> list[Msg]:
        size = self._settings.batch
        wait = self._settings.poll_interval
        due = self._holds.next_due(self._settle)
        if due is not None:  # wake up in time to write what is held
            wait = min(wait, max(due - time.monotonic(), 0.001))
        messages = await feed.next_batch(size, timeout=wait)
        deadline = time.monotonic() + self._settings.linger
        while messages and len(messages) < size:
            left = deadline - time.monotonic()
            more = await feed.next_batch(size - len(messages), timeout=left) if left > 0 else []
            if not more:
                break
            messages += more
        return messages

    async def _follow_generation(self) -> None:
        try:
            pointer = await self._generations.current()
            if pointer.generation <= self._generation:
                return
            old = self._generation
            if self._feed is not None:
                await self._feed.stop()
            self._generation = pointer.generation
            await self._bind()
            self._feed = await self._open_feed()
            _log.info("projector moved to a rebuilt generation", generation=self._generation)
            await drop_generation(
                self._nc, old, prefix=self._settings.consumer_prefix, publisher=self._publisher
            )
        except Exception as exc:
            _log.warning("cannot follow the projection generation", error=str(exc) or repr(exc))

    async def _handle(self, messages: list[Msg]) -> None:
        now = time.monotonic()
        groups: dict[str, list[Msg]] = defaultdict(list)
        for msg in messages:
            groups[subjects.workflow_of(msg.subject)].append(msg)
        continued = self._continuity.begin(messages)

        async def project(wf: str, group: list[Msg]) -> bool | None:
            try:
                async with self._limit:
                    return await self._project(wf, group if continued else None, now)
            except Exception as exc:
                _log.warning("projecting failed, will retry", workflow=wf, error=repr(exc))
                return False

        outcomes = await asyncio.gather(*(project(wf, group) for wf, group in groups.items()))
        due = [wf for wf in self._holds.due(now, self._settle) if wf not in groups]
        released = await self._write_held(due)
        settled: list[tuple[bool, list[Msg]]] = []
        for (wf, group), outcome in zip(groups.items(), outcomes, strict=True):
            if outcome is None:
                self._holds.add(wf, group, now)
            else:
                settled.append((outcome, group + self._holds.take(wf)))
        settled += [(ok, self._holds.take(wf)) for wf, ok in zip(due, released, strict=True)]
        flushed = await self._settle_messages(settled)
        self._continuity.end(messages, complete=flushed and False not in outcomes)

    async def _release(self, *, everything: bool = False) -> None:
        """Write the held views that are due (or all of them) and ack their messages."""
        now = time.monotonic()
        due = self._holds.everything() if everything else self._holds.due(now, self._settle)
        if not due:
            return
        released = await self._write_held(due)
        await self._settle_messages(
            [(ok, self._holds.take(wf)) for wf, ok in zip(due, released, strict=True)]
        )

    async def _settle_messages(self, settled: list[tuple[bool, list[Msg]]]) -> bool:
        """Ack the messages of written views, nak the others; False when nothing could be."""
        try:
            assert self._recent is not None
            await self._recent.flush()  # before any ack: a crash makes the messages come back
            flushed = True
        except Exception as exc:
            _log.warning("writing recent lists failed, will retry", error=repr(exc))
            flushed = False
        for ok, messages in settled:
            if ok and flushed:
                for msg in messages:  # acks are plain publishes: no task each
                    await msg.ack()
                self.events_seen += len(messages)
            else:
                for msg in messages:
                    await msg.nak(delay=1.0)
        try:
            assert self._store is not None
            await self._store.mark_index()  # after the acks: only listings' speed depends on it
        except Exception as exc:
            _log.warning("marking the listing index failed, will retry", error=repr(exc))
        return flushed

    # --- folding and writing ------------------------------------------------------------------

    async def _project(self, wf: str, batch: list[Msg] | None, now: float) -> bool | None:
        """Bring the workflow's view up to date; ``batch``: its messages, when they continue
        what its cached state reflects (``projections.folding.Continuity``).

        True: written (or nothing to write); None: held (``projections.holding``)."""
        store = self._store
        assert store is not None
        epoch = self._continuity.epoch
        tracked = self._cache.get(wf)
        if tracked is None:
            if batch is not None and is_birth(wf, batch[0]):
                # Born in this batch: nothing to read. Nothing stored either, normally; if
                # something is, the first write's compare-and-set finds it.
                tracked = _Tracked(WorkflowState(workflow_id=wf), Written(), epoch)
            else:
                written = await store.written(wf)
                tracked = _Tracked(WorkflowState(workflow_id=wf), written, epoch - 1)
        if batch is not None and tracked.epoch == epoch:
            state = self._folder.from_messages(tracked.state, batch)
        else:
            state = await self._folder.from_log(tracked.state)
        if self._may_hold(wf, state, tracked.written, now):
            self._remember(wf, _Tracked(state, tracked.written, epoch))
            return None
        written = await self._store_state(wf, state, tracked.written)
        self._remember(wf, _Tracked(state, written, epoch))
        return True

    def _may_hold(self, wf: str, state: WorkflowState, written: Written, now: float) -> bool:
        if self._settle <= 0 or state.status is None or state.status.is_terminal:
            return False
        if state.stream_seq <= written.seq:
            return False  # nothing new to write
        since = self._holds.since(wf)
        return since is None or now - since < self._settle

    async def _write_held(self, wfs: list[str]) -> list[bool]:
        async def write(wf: str) -> bool:
            tracked = self._cache[wf]  # held workflows are never dropped from the cache
            try:
                async with self._limit:
                    written = await self._store_state(wf, tracked.state, tracked.written)
            except Exception as exc:
                _log.warning("writing a held view failed, will retry", workflow=wf, error=repr(exc))
                return False
            self._cache[wf] = _Tracked(tracked.state, written, tracked.epoch)
            return True

        return list(await asyncio.gather(*(write(wf) for wf in wfs)))

    async def _store_state(self, wf: str, state: WorkflowState, written: Written) -> Written:
        """Write the view of ``state`` unless what is stored reflects it; what is stored then."""
        store = self._store
        assert store is not None
        if state.status is not None and state.definition is not None:
            if state.stream_seq > written.seq:
                if not written.seq:
                    self.views_created += 1
                written = await store.write(workflow_view(state), state.stream_seq, written)
            assert self._recent is not None
            # Every time, not only on a change: a crash may have come between the view and
            # the recent lists, and noting again is free.
            await self._recent.note(
                wf,
                name=state.definition.name,
                status=state.status.value,
                started_us=micros(state.started_at),
            )
        return written

    def _remember(self, wf: str, tracked: _Tracked) -> None:
        self._cache[wf] = tracked
        self._cache.move_to_end(wf)
        excess = len(self._cache) - self._settings.cache_size
        if excess > 0:
            # The least recently used go, except held ones: their state is what gets written.
            oldest = itertools.islice(self._cache, excess + len(self._holds))
            for old in [wf for wf in oldest if wf not in self._holds][:excess]:
                del self._cache[old]


async def drop_generation(
    nc: NATS, generation: int, *, prefix: str = "projector", publisher: Publisher | None = None
) -> None:
    """Delete a generation's views, index entries and consumer (all idempotent)."""
    await purge_generation(publisher or Publisher(nc), generation)
    with contextlib.suppress(Exception):
        await nc.jetstream().delete_consumer(
            subjects.EVENTS_STREAM, consumer_name(prefix, generation)
        )
