"""One task per worker keeps its jobs' leases and looks out for stuck attempts.

- **Heartbeats**: every heartbeat period one tick sends ``in_progress()`` for every held message,
  then one ``flush()``: its round trip proves the renewals reached the server. A lease whose
  renewals fail for its whole length is lost (the job is stopped, nothing reported).
- **Watchdog**: every second, an attempt whose job ended (``ctx.ended_at``) but that has not
  moved on to its logs and report within ``STUCK_AFTER`` seconds is given up: an error says
  where it waits, its lease is no longer renewed and its message is released for another run,
  rather than the job staying ``running`` for ever (``Attempt.stuck_for``).

The loop ends by itself once stopped (a flag looked at after every await).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Final

from nats.aio.client import Client as NATS

from events.tasks import cancel_and_wait, stack_of
from sdk.worker.attempt import Attempt

WATCHDOG_EVERY: Final = 1.0
"""Seconds between two looks for attempts stuck after their job ended."""


class LeaseKeeper:
    """Heartbeats and watchdog over ``attempts`` (the worker's running attempts and their tasks).

    ``period()`` is the heartbeat period now; ``connection()`` the worker's connection;
    ``after_tick()`` runs after every heartbeat tick (the worker refreshes its presence there).
    """

    def __init__(
        self,
        attempts: dict[Attempt, asyncio.Task[None]],
        *,
        period: Callable[[], float],
        connection: Callable[[], NATS | None],
        after_tick: Callable[[], None],
        log: Any,
    ) -> None:
        self._attempts = attempts
        self._period = period
        self._connection = connection
        self._after_tick = after_tick
        self._log = log
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.stuck: dict[Attempt, asyncio.Task[None]] = {}
        """Attempts given up by the watchdog whose task has not ended yet."""

    def start(self) -> None:
        self._running = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="jw-heartbeats")

    async def stop(self, *, timeout: float) -> None:
        self._running = False
        await cancel_and_wait(self._task, timeout=timeout, what="heartbeats")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_pulse = loop.time() + self._period()
        while self._running:
            await asyncio.sleep(max(0.0, min(WATCHDOG_EVERY, next_pulse - loop.time())))
            if not self._running:
                return
            self.watchdog()
            if loop.time() < next_pulse:
                continue
            period = self._period()
            next_pulse = loop.time() + period
            try:
                await self.pulse(period)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("heartbeat tick failed")
            if self._running:
                self._after_tick()

    async def pulse(self, period: float) -> None:
        """Renew every held lease; a lease whose renewals fail for its whole length is lost."""
        nc = self._connection()
        if nc is None:
            return
        held = [a for a in self._attempts if not a.settled]
        delivered = nc.is_connected
        if delivered:
            for attempt in held:
                with contextlib.suppress(Exception):
                    await attempt.msg.in_progress()
            try:  # the round trip proves the renewals reached the server
                await nc.flush(timeout=max(1, int(period)))
            except Exception:
                delivered = False
        moment = time.monotonic()
        for attempt in held:
            if delivered:
                attempt.heartbeat_ok_at = moment
            elif moment - attempt.heartbeat_ok_at >= attempt.lease_ttl:
                attempt.lose_lease(
                    f"no heartbeat reached the server for {attempt.lease_ttl:g}s (lease)"
                )

    def watchdog(self) -> None:
        """Give up the attempts stuck after their job ended (see the module docstring)."""
        now = time.monotonic()
        for attempt, task in list(self._attempts.items()):
            late = attempt.stuck_for(now)
            if late is None:
                continue
            self._log.error(
                "a job ended but its attempt is stuck: releasing the job for another run",
                workflow_id=attempt.state.workflow_id if attempt.state else None,
                job=attempt.state.job if attempt.state else None,
                epoch=attempt.epoch,
                phase=attempt.phase,
                ended_ago=round(late, 1),
                stack=stack_of(task),
            )
            self._attempts.pop(attempt, None)
            self.stuck[attempt] = task
            task.add_done_callback(self._forget(attempt))
            attempt.give_up("its attempt was stuck after the job ended")
            task.cancel()

    def _forget(self, attempt: Attempt) -> Callable[[asyncio.Task[None]], None]:
        def forget(_: asyncio.Task[None]) -> None:
            self.stuck.pop(attempt, None)

        return forget
