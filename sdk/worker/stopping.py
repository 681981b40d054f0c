"""Letting a worker's running attempts end at shutdown, within bounds.

First the shutdown grace (``None``: as long as they take); then, once aborted (a second signal,
``graceful=False``, the grace expired), until the abort deadline (the largest ``kill_grace``, by
which every executor has killed its job, plus a margin); then every attempt still there is given
up (its message released) and cancelled again and again for a last moment. Nothing waits for
ever: a second signal ends ``jetwork worker`` within ``kill_grace`` plus about a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from events.tasks import RECANCEL_EVERY
from sdk.worker.attempt import Attempt


async def wait_for_attempts(
    attempts: dict[Attempt, asyncio.Task[None]],
    *,
    grace: float | None,
    aborted: asyncio.Event,
    deadline: Callable[[], float | None],
    abort: Callable[[str], None],
    last_moment: float,
    log: Any,
) -> None:
    """Return once ``attempts`` (emptied by their tasks as they end) is empty, or given up.

    ``deadline()`` is the abort deadline (``time.monotonic()``), None until ``aborted`` is set;
    ``abort(reason)`` is called when the grace expires.
    """
    loop = asyncio.get_running_loop()
    grace_ends = None if grace is None else loop.time() + grace
    while attempts:
        tasks: set[asyncio.Future[Any]] = set(attempts.values())
        ends = deadline()
        if ends is not None:
            left = ends - time.monotonic()
            if left <= 0:
                break
            await asyncio.wait(tasks, timeout=left)
            continue
        left_of_grace = None if grace_ends is None else grace_ends - loop.time()
        if grace is not None and left_of_grace is not None and left_of_grace <= 0:
            abort(f"shutdown grace of {grace:g}s expired")
            continue
        abort_seen = loop.create_task(aborted.wait())
        try:
            await asyncio.wait(
                {*tasks, abort_seen}, timeout=left_of_grace, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            abort_seen.cancel()
    if not attempts:
        return
    log.error("running jobs did not stop in time: cancelling their attempts", running=len(attempts))
    left_behind = dict(attempts)
    for attempt in left_behind:
        attempt.give_up("the worker is aborting")
    ends = time.monotonic() + last_moment
    while (waiting := {t for t in left_behind.values() if not t.done()}) and (
        time.monotonic() < ends
    ):
        for task in waiting:
            task.cancel()
        await asyncio.wait(waiting, timeout=RECANCEL_EVERY)
