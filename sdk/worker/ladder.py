"""Pulling a label set's priority levels highest first (``events.priority``).

A label set whose jobs were all queued at the default priority has one consumer, pulled by one
``Puller`` on its own, exactly as before priorities existed. Once a job of the set is queued at
another priority, the set has a consumer per level in use and the worker pulls them as one
``Ladder``: each level keeps its ``Puller`` (its subscription, lease and pause), but the ladder
decides when each pulls.

With free slots, the ladder **scans** the levels from the highest: a ``no_wait`` request per
level for what it holds now (up to the free slots), going down only while slots are left. A
level whose long poll is still open is skipped: the server would have delivered what it holds to
that request, so it holds nothing. When a scan leaves slots free, every level without an open
request gets a long poll, and the ladder waits for one of them to end. A slot freed while jobs
wait therefore goes to the highest level holding one, in the order its jobs were queued.

What this costs: a scan is a round trip per empty level above the one that has work, and a
ladder's levels are not prefetched (a dispatch held for the next slot would start before a
higher one queued after it). A label set without priorities pays neither. A ladder orders the
levels of one label set; a worker's different label sets are still pulled side by side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog

from events.dispatch import LabelSet
from events.tasks import cancel_and_wait
from sdk.worker.pull import MAX_PULL_BATCH, WATCHDOG_MARGIN, Puller
from sdk.worker.slots import Slots

ENSURE_RETRY: Final = 1.0
"""Seconds between attempts to ensure a level's consumer that could not be ensured."""

STOP_TIMEOUT: Final = 2.0
"""Seconds a stopping ladder's loop has to end (``events/tasks.py``: cancelled until it does)."""

_log = structlog.get_logger("jetwork.worker")


class Ladder:
    """The priority levels of one label set, pulled highest first (see the module's doc).

    The levels' ``Puller``s are started with ``pulling=False`` (or taken over with
    ``stop_pulling``) and added with ``add``; they share ``slots``.
    """

    def __init__(self, *, slots: Slots, poll_interval: float, peers: Callable[[], int]) -> None:
        self.slots = slots
        self._poll = poll_interval
        self._peers = peers
        self.levels: list[Puller] = []
        """Highest priority first."""
        self._wake = asyncio.Event()
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_ensure = 0.0

    @property
    def labelset(self) -> LabelSet:
        """The label set (its highest level: every level has the same requirements)."""
        return self.levels[0].labelset

    @property
    def delivering(self) -> bool:
        """Whether a level delivers (``Puller.delivering``)."""
        return any(level.delivering for level in self.levels)

    @property
    def lease_ttl(self) -> float:
        return min(level.lease_ttl for level in self.levels)

    @property
    def ready(self) -> asyncio.Event:
        """Set once every level's consumer was ensured."""
        return self._ready

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def add(self, level: Puller) -> None:
        level.prefetching = False
        level.on_request_end = self._wake.set
        self.levels.append(level)
        self.levels.sort(key=lambda puller: puller.labelset.rank, reverse=True)
        self._ready.clear()
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        for level in self.levels:
            level.set_paused(paused)
        if paused:
            self._resumed.clear()
        else:
            self._resumed.set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"jetwork-ladder-{self.labelset.consumer}"
        )

    async def stop(self) -> None:
        self._stopping = True  # ends the loop at its next step even if a cancellation is lost
        await cancel_and_wait(self._task, timeout=STOP_TIMEOUT, what="priority ladder")
        await asyncio.gather(*(level.stop() for level in self.levels))

    async def _loop(self) -> None:
        while not self._stopping:
            await self._ensure_levels()
            await self.slots.wait_free()
            await self._resumed.wait()
            if self._stopping:
                return
            await self._scan()
            if self.slots.free > 0 and not self.paused and not self._stopping:
                self._wake.clear()
                await self._long_poll()
                await self._wait()

    async def _ensure_levels(self) -> None:
        missing = [level for level in self.levels if level.missing]
        if missing and time.monotonic() >= self._next_ensure:
            for level in missing:
                await level.ensure()
            if any(level.missing for level in self.levels):
                self._next_ensure = time.monotonic() + ENSURE_RETRY
        if not any(level.missing for level in self.levels):
            self._ready.set()
        elif all(level.missing for level in self.levels):
            await asyncio.sleep(ENSURE_RETRY)  # nothing to pull yet

    def _batch(self) -> int:
        return min(MAX_PULL_BATCH, max(1, self.slots.free // max(1, self._peers())))

    async def _scan(self) -> None:
        """What the levels hold now, highest first, while slots are free."""
        for level in self.levels:
            if self.slots.free <= 0 or self.paused or self._stopping:
                return
            if level.missing or level.request_open:
                continue  # an open request: the level is empty (else it would have delivered)
            await level.pull_now(self._batch())

    async def _long_poll(self) -> None:
        batch = self._batch()
        for level in self.levels:
            if not level.missing and not level.request_open:
                await level.long_poll(batch)

    async def _wait(self) -> None:
        """Until a level's request ends (or the watchdog gives up a lost one)."""
        try:
            async with asyncio.timeout(self._poll + WATCHDOG_MARGIN):
                await self._wake.wait()
        except TimeoutError:
            now = time.monotonic()
            for level in self.levels:
                level.give_up_stalled(now)


async def join_ladder(
    current: Puller | Ladder | None,
    level: Puller,
    *,
    poll_interval: float,
    peers: Callable[[], int],
    paused: bool,
) -> Ladder:
    """Add a priority ``level`` (a ``Puller`` not started yet) to its label set's ladder:
    ``current``, or a new one that takes over ``current``, the default level's ``Puller``
    pulling on its own until now. Returns the ladder now pulling the label set."""
    await level.start(pulling=False)
    await level.ensure()  # now, not when a slot frees: the consumer delivers all it missed
    if isinstance(current, Ladder):
        current.add(level)
        return current
    ladder = Ladder(slots=level.slots, poll_interval=poll_interval, peers=peers)
    if current is not None:
        await current.stop_pulling()
        ladder.add(current)
    ladder.add(level)
    ladder.set_paused(paused)
    await ladder.start()
    return ladder
