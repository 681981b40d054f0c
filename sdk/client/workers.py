"""What the client says about workers: the live ones, and the work none of them can take."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Iterable

from events.errors import JetworkError
from projections.reader import WorkerInfo
from projections.views import WorkflowView
from projections.waiting import UnservedLabelSet, live_capabilities, with_live_workers

# How old the live workers behind ``follow``'s hints may be, in seconds.
_FRESH = 2.0


class WorkerList(builtins.list[WorkerInfo]):
    """``Client.workers()``: the live workers, by id, and ``unserved``: the label sets with
    dispatches waiting that none of the live (not stale) workers serves."""

    def __init__(
        self, workers: Iterable[WorkerInfo] = (), *, unserved: Iterable[UnservedLabelSet] = ()
    ) -> None:
        super().__init__(workers)
        self.unserved: builtins.list[UnservedLabelSet] = builtins.list(unserved)


class LiveWorkers:
    """Counts the live workers for each queued job of a stream of views (``Client.follow``).

    The workers are read only for a view with queued jobs, at most every ``_FRESH`` seconds: a
    view per event must not cost a KV read each. The count is a hint: when it cannot be read, the
    view goes out without it.
    """

    def __init__(self, read: Callable[[], Awaitable[builtins.list[WorkerInfo]]]) -> None:
        self._read = read
        self._live: builtins.list[frozenset[str]] = []
        self._read_at: float | None = None

    async def count(self, view: WorkflowView) -> WorkflowView:
        if not any(job.waiting_for is not None for job in view.jobs.values()):
            return view
        now = asyncio.get_running_loop().time()
        if self._read_at is None or now - self._read_at > _FRESH:
            try:
                self._live = live_capabilities(await self._read())
            except JetworkError:
                return view
            self._read_at = now
        return with_live_workers(view, self._live)
