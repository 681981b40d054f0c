"""Execution slots and lanes: how many jobs a worker (and each of its handlers) runs at once.

A **lane** is what the jobs of one handler (label sets with ``@<handler>``) or of no handler run
with: settings, slots and executor. Its settings give its consumers their lease and poll.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import structlog

from events.dispatch import HANDLER_PREFIX, LabelSet
from sdk.worker.config import WorkerConfig
from sdk.worker.executors import Executor

_HOLD_WEIGHT: Final = 0.1  # of each new job in the moving average of slot hold times

_log = structlog.get_logger("jetwork.worker")


class Slots:
    """Execution slots: the worker's (``max_concurrent_jobs``), shared by all its consumers, or
    a handler's, taken ``within`` the worker's (a job holds one of each).

    It also learns how long a job holds a slot (``typical_hold``, a moving average) and tells
    listeners (``on_release``) when one frees up."""

    def __init__(self, size: int, *, within: Slots | None = None) -> None:
        self.size = size
        self.used = 0
        self._within = within
        self._free = asyncio.Event()
        self._free.set()
        self._taken: collections.deque[float] = collections.deque()
        self.typical_hold = 0.0
        self._listeners: list[Callable[[], None]] = []

    def on_release(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    @property
    def free(self) -> int:
        own = self.size - self.used
        return own if self._within is None else min(own, self._within.free)

    def try_take(self) -> bool:
        if self.used >= self.size:
            return False
        if self._within is not None and not self._within.try_take():
            return False
        self.used += 1
        if self.used >= self.size:
            self._free.clear()
        self._taken.append(time.monotonic())
        return True

    def release(self) -> None:
        if self.used > 0:
            self.used -= 1
            if self._within is not None:
                self._within.release()
            if self._taken:  # jobs end in any order: an average over them all is enough
                held = time.monotonic() - self._taken.popleft()
                self.typical_hold += (held - self.typical_hold) * _HOLD_WEIGHT
        self._free.set()
        for listener in self._listeners:
            listener()

    async def wait_free(self) -> None:
        while True:
            await self._free.wait()
            if self._within is None:
                return
            await self._within.wait_free()
            if self.used < self.size:
                return


@dataclass(frozen=True, slots=True)
class Lane:
    """How the jobs of one handler (or all jobs naming no handler) run on a worker: with which
    settings (``WorkerConfig.for_handler``), in which slots and by which executor."""

    config: WorkerConfig
    slots: Slots
    executor: Executor


def lanes_for(
    config: WorkerConfig,
    handlers: Mapping[str, WorkerConfig],
    *,
    slots: Slots,
    executor: Callable[[WorkerConfig], Executor],
) -> dict[str | None, Lane]:
    """The lanes of a worker: its own (key ``None``: ``config`` and ``slots``) and one per handler.

    A handler allowed fewer jobs at once than the worker gets slots of its own within the
    worker's; one allowed more is still bound by the worker's (and a warning says so).
    """
    lanes: dict[str | None, Lane] = {None: Lane(config, slots, executor(config))}
    for name, handler_config in handlers.items():
        limit = handler_config.max_concurrent_jobs
        own = slots
        if limit < slots.size:
            own = Slots(limit, within=slots)
        elif limit > slots.size:
            _log.warning(
                "a handler cannot run more jobs at once than its worker",
                handler=name,
                handler_concurrency=limit,
                concurrency=slots.size,
            )
        lanes[name] = Lane(handler_config, own, executor(handler_config))
    return lanes


def handler_of(labelset: LabelSet) -> str | None:
    """The handler whose jobs a label set carries (at most one: a job ``uses`` one handler)."""
    for member in labelset.requirements:
        if member.startswith(HANDLER_PREFIX):
            return member.removeprefix(HANDLER_PREFIX)
    return None
