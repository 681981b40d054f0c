"""When a delayed thing happens: message schedules (durable) and in-process timers (exact).

nats-server 2.15 takes ``Nats-Schedule: @at <RFC 3339>`` with fractional seconds and fires a due
schedule from a timer it never runs more often than every 250 ms (``server/scheduler.go``), so a
schedule fires 0-250 ms after it is due (measured here: p50 +140 ms, max +250 ms). That is
durable, and good enough for long delays, but a 200 ms retry backoff would wait up to 450 ms.

So a delay due within ``NearTimers.horizon`` is *also* run by a timer in the process that armed
it: it acts at the due time, and the durable schedule, which fires a moment later, finds nothing
left to do (every timed action is checked against the log: a stale retry timer requeues nothing,
a second dispatch of an attempt is refused by the claim). If that process dies in between, the
durable schedule does the work, 250 ms late at most: exact when all is well, never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

_log = structlog.get_logger("jetwork.timers")

DEFAULT_HORIZON: Final = 5.0
"""Seconds ahead within which a delay is also timed in-process (beyond, +250 ms is < 5 %)."""


def schedule_time(due: datetime) -> str:
    """The ``@at`` value for ``due``: RFC 3339 in UTC with milliseconds, rounded **up**.

    A schedule must never fire early (a job claimable before it is due, a timer firing before
    its deadline), so a sub-millisecond remainder goes to the next millisecond.
    """
    utc = due.astimezone(UTC)
    millis = -(-utc.microsecond // 1000)  # ceiling
    whole = utc.replace(microsecond=0) + timedelta(milliseconds=millis)
    return whole.strftime("%Y-%m-%dT%H:%M:%S.") + f"{whole.microsecond // 1000:03d}Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


class NearTimers:
    """Runs an action at a wall-clock time in this process, for times within ``horizon``.

    Best effort by design: each action is backed by a durable schedule, so an action that fails
    is logged and left to it, and ``cancel()`` (on stop) simply drops what is pending.
    ``horizon <= 0`` turns it off (every delay waits for its schedule).
    """

    def __init__(
        self, *, horizon: float = DEFAULT_HORIZON, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.horizon = horizon
        self._clock = clock
        self._pending: set[asyncio.Task[None]] = set()

    def schedule(self, due: datetime, action: Callable[[], Awaitable[None]], *, what: str) -> bool:
        """Run ``action`` at ``due`` if that is within the horizon; False when it is not."""
        delay = (due - self._clock()).total_seconds()
        if self.horizon <= 0 or delay > self.horizon:
            return False
        task = asyncio.create_task(self._run(max(0.0, delay), action, what))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def cancel(self) -> None:
        """Drop every pending action (their durable schedules still fire)."""
        for task in self._pending:
            task.cancel()
        self._pending.clear()

    async def _run(self, delay: float, action: Callable[[], Awaitable[None]], what: str) -> None:
        await asyncio.sleep(delay)
        try:
            await action()
        except Exception as exc:  # the durable schedule does it a moment later
            _log.warning(
                "in-process timer failed; its durable schedule will fire",
                timer=what,
                error=str(exc) or type(exc).__name__,
            )
