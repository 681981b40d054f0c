"""The cancellation watcher of one running job: checks its job actor for a cancel request or for
the job having moved on (another claim, an end decided elsewhere).

It checks every ``cancellation_check_interval`` seconds, or at once when ``poke``d (a cancel
notice). Most jobs end before their first check is due, so its task starts only then (or at the
first poke) instead of one task per job cancelled right away.

It ends by itself: ``stop()`` sets a flag the loop looks at after every await, wakes it, and
cancels it with ``cancel_and_wait``. Before issue 17 the run did ``watcher.cancel(); await
watcher``; a cancellation swallowed by ``asyncio.wait_for`` (Python 3.11) inside a check's direct
get left the watcher looping for ever, the run awaiting it and the finished job ``running``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from actors.job import JobState
from events.catalog import JobStatus
from events.errors import JetworkError
from events.tasks import cancel_and_wait, wait_event
from sdk.worker.job_context import JobContext

STOP_TIMEOUT: Final = 2.0
"""Seconds ``stop()`` waits for the watcher (it is cancelled again and again meanwhile)."""


class Watcher:
    """Watches one running job (see the module docstring).

    ``refresh()`` folds the job actor's newer events and returns its state; ``moved_on(state)``
    is called once when the state shows another epoch or an end; a cancel request reaches the
    job through ``ctx.request_cancel``.
    """

    def __init__(
        self,
        ctx: JobContext,
        *,
        epoch: int,
        interval: float,
        refresh: Callable[[], Awaitable[JobState]],
        moved_on: Callable[[JobState], None],
        log: Any,
    ) -> None:
        self._ctx = ctx
        self._epoch = epoch
        self._interval = interval
        self._refresh = refresh
        self._moved_on = moved_on
        self._log = log
        self._wake = asyncio.Event()
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._due = asyncio.get_running_loop().call_later(interval, self._start)

    def poke(self) -> None:
        """Check now (a cancel notice arrived)."""
        self._wake.set()
        self._start()

    async def stop(self) -> None:
        """Stop checking; returns once the watcher ended (or ``STOP_TIMEOUT`` passed)."""
        self._stopped = True
        self._due.cancel()
        self._wake.set()
        task, self._task = self._task, None
        await cancel_and_wait(task, timeout=STOP_TIMEOUT, what="cancellation watcher")

    def _start(self) -> None:
        if self._task is None and not self._stopped:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while not self._stopped:
            self._wake.clear()
            try:
                state = await self._refresh()
            except JetworkError as exc:
                self._log.warning("cannot check the job for cancellation", error=str(exc))
            else:
                if self._stopped:
                    return
                if state.epoch != self._epoch or state.status is not JobStatus.RUNNING:
                    self._moved_on(state)
                    return
                if state.cancel_requested and not self._ctx.cancelled.is_set():
                    self._log.info("cancel requested", reason=state.cancel_reason)
                    self._ctx.request_cancel(state.cancel_reason or "cancelled")
            await wait_event(self._wake, self._interval)
