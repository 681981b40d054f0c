"""The projector's batches: events taken from the partitions' feeds, grouped by workflow and
folded onto each workflow's state in memory (read from the log when it is not there), then the
views that are due written (``projections.writing``) and the positions moved on.

``ProjectorBatches`` is the part of ``Projector`` that handles one batch at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict

import structlog

from actors.workflow_state import blank
from events import subjects
from events.ordered_feed import Delivered
from projections.feeds import Feeds
from projections.folding import Folder, is_birth
from projections.store import Written
from projections.writing import HeldViews, Tracked

_log = structlog.get_logger("jetwork.projector")


class ProjectorBatches(HeldViews):
    """Takes a batch from the feeds, folds it, writes what is due (set up by ``Projector``)."""

    _feeds: Feeds
    _folder: Folder
    _moving: asyncio.Lock
    events_seen: int

    async def _next_batch_handled(self) -> None:
        wait = self._settings.poll_interval
        due = self._holds.next_due(self._settle)
        if due is not None:  # wake up in time to write what is held
            wait = min(wait, max(due - time.monotonic(), 0.001))
        assert self._positions is not None and self._recent is not None
        if self._recent.dirty:  # and in time to write the recent lists
            wait = min(wait, max(self._positions.due_in(), 0.001))
        if not self._feeds.inbox:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._feeds.wakeup.wait()
            if self._feeds.inbox and self._settings.linger > 0:
                await asyncio.sleep(self._settings.linger)  # let more join this batch
        async with self._moving:
            taken = self._feeds.take(self._settings.batch)
            if taken:
                await self._handle(taken)
            else:
                await self._release()
            await self._save_progress()

    async def _save_progress(self) -> None:
        """The recent lists and the listing marks, then the positions: at most every
        ``position_every``, not after every batch (at a few hundred workflows a second a batch
        holds one or two, and each wrote its recent lists: 1.6 messages per workflow). A
        position is saved only after the recent-list notes of the views it covers, so a
        projector killed in between notes them again when it resumes."""
        positions = self._positions
        assert positions is not None
        if positions.due_in() > 0:
            return
        await self._flush_recent()
        await positions.save()

    async def _handle(self, taken: list[tuple[int, Delivered]]) -> None:
        """Fold the batch onto each workflow's state, then write what is not held.

        Only reads (a workflow not in memory) and writes are I/O, done concurrently; folding
        runs inline, so a batch of many workflows costs no task each."""
        now = time.monotonic()
        positions = self._positions
        assert positions is not None
        groups: dict[str, list[Delivered]] = defaultdict(list)
        partition_of: dict[str, int] = {}
        for partition, msg in taken:
            wf = subjects.workflow_of(msg.subject)
            groups[wf].append(msg)
            partition_of[wf] = partition
        self.events_seen += len(taken)
        missing = [wf for wf, group in groups.items() if not self._known(wf, group[0])]
        if missing:
            await asyncio.gather(*(self._read(wf, partition_of[wf]) for wf in missing))
        now_due: list[str] = []
        for wf, group in groups.items():
            partition = partition_of[wf]
            positions.unwritten(partition, wf, group[0].seq)
            tracked = self._cache.get(wf)
            if tracked is None:  # its read failed: its events come again from the position
                continue
            state = self._folder.from_messages(tracked.state, group)
            if not self._may_hold(wf, state, tracked.written, now):
                now_due.append(wf)
            self._holds.add(wf, len(group), now)  # kept in memory until written
            self._remember(wf, Tracked(state, tracked.written, partition))
        for partition, msg in taken:
            positions.given(partition, msg.seq)
        urgent = set(now_due)
        due = [wf for wf in self._holds.due(now, self._settle) if wf not in urgent]
        await self._write_held(now_due + due)

    def _known(self, wf: str, first: Delivered) -> bool:
        """In memory, or born in this batch (nothing before it to read)."""
        if wf in self._cache:
            return True
        if is_birth(wf, first):
            # Nothing stored either, normally; if something is, the first write's
            # compare-and-set finds it.
            partition = subjects.partition_of(wf)
            self._remember(wf, Tracked(blank(wf), Written(), partition))
            return True
        return False

    async def _read(self, wf: str, partition: int) -> None:
        """A workflow met again (a restart, an eviction): its stored view and its history."""
        store = self._store
        assert store is not None
        try:
            async with self._limit:
                written = await store.written(wf)
                state = await self._folder.from_log(blank(wf))
        except Exception as exc:
            _log.warning("reading a workflow failed, will retry", workflow=wf, error=repr(exc))
            return
        self._remember(wf, Tracked(state, written, partition))
