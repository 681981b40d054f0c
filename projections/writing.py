"""Writing the projector's views: the workflows it folded, held a moment (``projections.holding``)
and written once for many events, newest-wins (``projections.store``), then the recent lists.

``HeldViews`` is the part of ``Projector`` that keeps the folded states in memory (bounded,
least recently used dropped, held ones kept) and writes the held ones when they are due.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from actors.workflow import WorkflowState
from projections.holding import Holds
from projections.index import micros
from projections.positions import Positions
from projections.recent import RecentWriter
from projections.store import ViewStore, Written
from projections.views import workflow_view

if TYPE_CHECKING:
    from projections.projector import ProjectorSettings

_log = structlog.get_logger("jetwork.projector")


@dataclass(frozen=True, slots=True)
class Tracked:
    """A workflow in memory: its folded state, what is stored of it, its partition."""

    state: WorkflowState
    written: Written
    partition: int


class HeldViews:
    """The folded states in memory and the writing of their views (set up by ``Projector``)."""

    _settings: ProjectorSettings
    _settle: float
    _cache: OrderedDict[str, Tracked]
    _holds: Holds
    _limit: asyncio.Semaphore
    _store: ViewStore | None
    _recent: RecentWriter | None
    _positions: Positions | None
    views_created: int

    async def _release(self, *, everything: bool = False) -> None:
        """Write the held views that are due (or all of them, then the recent lists)."""
        now = time.monotonic()
        due = self._holds.everything() if everything else self._holds.due(now, self._settle)
        if due:
            await self._write_held(due)
        if everything:
            await self._flush_recent()

    async def _flush_recent(self) -> None:
        try:
            assert self._recent is not None
            await self._recent.flush()
        except Exception as exc:  # noted again with the next write of each workflow
            _log.warning("writing recent lists failed, will retry", error=repr(exc))
        try:
            assert self._store is not None
            await self._store.mark_index()  # only listings' speed depends on it
        except Exception as exc:
            _log.warning("marking the listing index failed, will retry", error=repr(exc))

    # --- folding and writing ------------------------------------------------------------------

    def _may_hold(self, wf: str, state: WorkflowState, written: Written, now: float) -> bool:
        if self._settle <= 0 or state.status is None or state.status.is_terminal:
            return False
        if state.stream_seq <= written.seq:
            return False  # nothing new to write
        since = self._holds.since(wf)
        return since is None or now - since < self._settle

    async def _write_held(self, wfs: list[str]) -> None:
        assert self._positions is not None
        positions = self._positions

        async def write(wf: str) -> None:
            tracked = self._cache.get(wf)
            if tracked is None:  # its partition was given up
                self._holds.take(wf)
                return
            try:
                async with self._limit:
                    written = await self._store_state(wf, tracked.state, tracked.written)
            except Exception as exc:  # stays held, and due: written again with the next batch
                _log.warning("writing a view failed, will retry", workflow=wf, error=repr(exc))
                return
            self._holds.take(wf)
            self._cache[wf] = Tracked(tracked.state, written, tracked.partition)
            positions.written(tracked.partition, wf)

        await asyncio.gather(*(write(wf) for wf in wfs))

    async def _store_state(self, wf: str, state: WorkflowState, written: Written) -> Written:
        """Write the view of ``state`` unless what is stored reflects it; what is stored then."""
        store = self._store
        assert store is not None
        if state.deleted:
            # Its tombstone (``WorkflowDeleted``): nothing of it may be shown any more.
            return await store.remove(wf, written) if written.seq else written
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
                namespace=state.namespace,
            )
        return written

    def _remember(self, wf: str, tracked: Tracked) -> None:
        self._cache[wf] = tracked
        self._cache.move_to_end(wf)
        excess = len(self._cache) - self._settings.cache_size
        if excess > 0:
            self._evict(excess)

    def _evict(self, count: int) -> None:
        """Drop the ``count`` least recently used states, except held ones (their state is what
        gets written), looking from the oldest only as far as that takes: the held ones are
        mostly the newest, so this costs about ``count`` steps, not one per held workflow (a
        rebuild of 40,000 workflows spent a third of its time on that scan)."""
        victims = []
        for wf in self._cache:
            if wf not in self._holds:
                victims.append(wf)
                if len(victims) == count:
                    break
        for wf in victims:
            del self._cache[wf]
