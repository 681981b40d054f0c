"""Timeouts for many requests with one timer: the answers of a reply inbox (``events.replies``,
``projections._nats.Publisher``) each fail with ``TimeoutError`` when not settled in time.

A plain timer per request (``loop.call_later`` and its cancel, a done-callback closure) was ~5%
of the engine's CPU in S1. Requests made with one timeout fall due in the order they were made,
so ``Deadlines`` keeps them in a queue per timeout with one timer for its head: settled ones are
dropped from the head as new ones come, and whatever is still pending when its time comes fails.
Every entry dropped is also dropped from the inbox's table of waiting tokens.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

_Waiting = dict[str, asyncio.Future[Any]]


class Deadlines:
    def __init__(self, waiting: _Waiting) -> None:
        self._waiting = waiting  # token -> future, shared with the inbox that files answers
        self._queues: dict[float, deque[tuple[float, str, asyncio.Future[Any]]]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}

    def watch(self, token: str, future: asyncio.Future[Any], timeout: float) -> None:
        """Fail ``future`` (waiting under ``token``) if it is not done in ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        while queue and queue[0][2].done():
            self._drop(queue.popleft())
        queue.append((loop.time() + timeout, token, future))
        if timeout not in self._timers:
            self._timers[timeout] = loop.call_at(queue[0][0], self._expire, timeout)

    def _expire(self, timeout: float) -> None:
        del self._timers[timeout]
        queue = self._queues[timeout]
        loop = asyncio.get_running_loop()
        now = loop.time()
        while queue and (queue[0][0] <= now or queue[0][2].done()):
            entry = queue.popleft()
            if not entry[2].done():
                entry[2].set_exception(TimeoutError("no answer in time"))
                entry[2].exception()  # an expiry nobody waits for is not an error to log
            self._drop(entry)
        if queue:
            self._timers[timeout] = loop.call_at(queue[0][0], self._expire, timeout)

    def _drop(self, entry: tuple[float, str, asyncio.Future[Any]]) -> None:
        _, token, future = entry
        if self._waiting.get(token) is future:
            del self._waiting[token]

    def cancel(self) -> None:
        """Stop every timer (the inbox is closing)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._queues.clear()
