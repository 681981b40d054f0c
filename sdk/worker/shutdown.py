"""How a worker stops: the first signal (or ``request_shutdown``) stops claiming and lets running
jobs finish and report; a second one, ``graceful=False`` or ``shutdown_grace`` expiring aborts
them (their process groups are killed, nothing is reported, their leases lapse).

Every step is bounded: once aborted, the whole shutdown ends within the largest ``kill_grace``
plus about a second, whatever the jobs do (``sdk.worker.stopping`` waits for the attempts).
``WorkerShutdown`` is the part of ``Worker`` that does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import TYPE_CHECKING, Any, Final

from nats.aio.client import Client as NATS

from events.tasks import cancel_and_wait
from sdk.worker.attempt import Attempt
from sdk.worker.config import WorkerConfig
from sdk.worker.ladder import Ladder
from sdk.worker.leases import LeaseKeeper
from sdk.worker.lifecycle import Listeners
from sdk.worker.pausing import Pauses
from sdk.worker.presence import PresenceBoard
from sdk.worker.pull import Puller
from sdk.worker.rate_limits import RateLimiter
from sdk.worker.slots import Lane
from sdk.worker.stopping import wait_for_attempts
from sdk.worker.tally import Tally

if TYPE_CHECKING:
    from sdk.worker.core import Phase

ABORT_MARGIN: Final = 0.3
"""Seconds after ``kill_grace`` an aborted job's attempt may take before it is cancelled."""
STOP_TIMEOUT: Final = 2.0
"""Bound on each step of a graceful stop."""
ABORT_CLEANUP: Final = 0.4
"""Seconds after the abort deadline that everything left (the attempts still running, then the
heartbeats, presence and connection) shares, so an aborted stop ends within about a second."""


class WorkerShutdown:
    """Stopping a ``Worker`` (its state is set up by ``Worker.__init__``)."""

    config: WorkerConfig
    phase: Phase
    aborted: bool
    _log: Any
    _aborting: bool
    _lanes: dict[str | None, Lane]
    _nc: NATS | None
    _presence: PresenceBoard | None
    _pullers: dict[str, Puller | Ladder]
    _attempts: dict[Attempt, asyncio.Task[None]]
    _leases: LeaseKeeper
    listeners: Listeners
    tally: Tally
    pauses: Pauses
    limiter: RateLimiter
    _labelset_task: asyncio.Task[None] | None
    _announcing: asyncio.Task[None] | None
    _watcher: Any
    _shutdown_task: asyncio.Task[None] | None
    _shutdown_requested: bool
    _abort_requested: asyncio.Event
    _abort_deadline: float | None
    _closed: asyncio.Event

    @property
    def max_kill_grace(self) -> float:
        """The longest ``kill_grace`` of the worker's and its handlers' settings."""
        return max(
            [self.config.kill_grace, *(lane.config.kill_grace for lane in self._lanes.values())]
        )

    @property
    def running(self) -> int:
        """Jobs this worker holds right now (claiming, running or reporting)."""
        return len(self._attempts)

    async def stop(self, *, graceful: bool = True) -> None:
        """Shut down and wait until done (see ``request_shutdown``)."""
        self.request_shutdown(graceful=graceful)
        await self.wait_closed()

    def request_shutdown(self, graceful: bool = True) -> None:
        """Stop claiming; running jobs finish and report. A second call (or ``graceful=False``)
        aborts them: their processes are killed, nothing is reported, their leases lapse."""
        if self.phase == "stopped":
            return
        if self._shutdown_requested and graceful:
            graceful = False
        self._shutdown_requested = True
        if not graceful:
            self._abort("shutdown without grace")
        if self.phase == "running":
            self._begin_shutdown()
        elif self.phase == "new":
            self.phase = "stopped"
            self._closed.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # --- shutdown ------------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        self._log.info("signal received", signal=sig.name, running=self.running)
        self.request_shutdown(graceful=True)

    def _begin_shutdown(self) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.get_running_loop().create_task(
                self._shutdown(), name="jw-shutdown"
            )

    def _abort(self, reason: str) -> None:
        self._aborting = True  # also stops what is still being claimed from running
        if self._abort_deadline is None:
            self._abort_deadline = time.monotonic() + self.max_kill_grace + ABORT_MARGIN
        self._abort_requested.set()
        if self._attempts:
            self._log.warning("aborting running jobs", reason=reason, running=self.running)
            self.aborted = True
        for attempt in list(self._attempts):
            attempt.lose_lease(f"the worker aborted ({reason})")

    async def _shutdown(self) -> None:
        """Stop pulling, let the running jobs end (or abort them), then stop everything else.

        Every step is bounded; once aborted, the whole shutdown ends within the largest
        ``kill_grace`` plus about a second, whatever the jobs do.
        """
        self.phase = "draining"
        self._log.info("worker draining", running=self.running)
        await cancel_and_wait(self._labelset_task, timeout=STOP_TIMEOUT, what="label set watcher")
        await self.pauses.stop()
        await self.limiter.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._budget(STOP_TIMEOUT)):
                await asyncio.gather(*(p.stop() for p in self._pullers.values()))
        await wait_for_attempts(
            self._attempts,
            grace=self.config.shutdown_grace,
            aborted=self._abort_requested,
            deadline=lambda: self._abort_deadline,
            abort=self._abort,
            last_moment=ABORT_CLEANUP / 2,
            log=self._log,
        )
        with contextlib.suppress(TimeoutError):  # coroutine listeners still hearing of results
            async with asyncio.timeout(self._budget(STOP_TIMEOUT)):
                await self.listeners.settle()
        await self._leases.stop(timeout=self._budget(STOP_TIMEOUT))
        await cancel_and_wait(self._announcing, timeout=self._budget(STOP_TIMEOUT), what="presence")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._budget(STOP_TIMEOUT)):
                if self._watcher is not None:
                    await self._watcher.stop()
                if self._presence is not None:
                    await self._presence.delete()
        await self._close_connection()
        self.phase = "stopped"
        self._log.info("worker stopped", aborted=self.aborted, jobs=self.tally.totals())
        self._closed.set()

    def _budget(self, timeout: float) -> float:
        """``timeout``, or what is left of the aborted shutdown's cleanup if that is less."""
        if self._abort_deadline is None:
            return timeout
        left = self._abort_deadline + ABORT_CLEANUP - time.monotonic()
        return max(0.01, min(timeout, left))

    async def _close_connection(self) -> None:
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._budget(STOP_TIMEOUT)):
                await nc.flush(timeout=2)  # acks are plain publishes: make sure they left
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._budget(STOP_TIMEOUT)):
                await nc.close()
