"""Stopping and waiting without trusting a single cancellation.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives while the awaited
future already has its result (CPython gh-86296, fixed in 3.12 by rebuilding ``wait_for`` on
``asyncio.timeout``): the cancelled task just carries on. nats-py awaits every request that way,
and so did jetwork's direct gets, so a task cancelled while its reply arrives can keep running.
That left finished jobs ``running`` for ever (issue 17; docs/architecture.md, "Workers" →
"Shutdown"). The rules the worker follows:

- a loop that another task stops also has a flag it checks after every await, so a lost
  cancellation ends it at its next step anyway;
- waits use ``asyncio.timeout`` or ``asyncio.wait``, which never swallow a cancellation;
- a task is stopped with ``cancel_and_wait``: cancelled again until it ends, for a bounded time,
  and loudly reported (with what it awaits) if it does not.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import structlog

RECANCEL_EVERY: Final = 0.05
"""Seconds between two cancellations of a task that has not ended yet."""

_log = structlog.get_logger("jetwork.tasks")


async def cancel_and_wait(
    task: asyncio.Task[Any] | None, *, timeout: float, what: str, quiet: bool = False
) -> bool:
    """Cancel ``task`` and wait up to ``timeout`` seconds for it to end; True if it ended.

    The task is cancelled again every ``RECANCEL_EVERY`` seconds while it runs (one
    cancellation may be swallowed). A task still running at the deadline is logged as an error
    with its await chain (unless ``quiet``: the caller reports it) and left alone. Its result or
    exception is not raised here; the caller's own cancellation is (``asyncio.wait`` never
    swallows it).
    """
    if task is None or task.done():
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        await asyncio.wait({task}, timeout=min(RECANCEL_EVERY, left))
    if not task.done():
        if quiet:
            return False
        _log.error(
            "a task did not stop when cancelled", what=what, waited=timeout, stack=stack_of(task)
        )
        return False
    if not quiet and not task.cancelled() and task.exception() is not None:
        _log.warning("a task failed while stopping", what=what, error=repr(task.exception()))
    return True


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds passed; True if it is set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


def stack_of(task: asyncio.Task[Any]) -> str:
    """Where ``task`` waits: its await chain, outermost first (for loud logs about stuck work).

    ``Task.print_stack`` shows only the outermost frame of a suspended coroutine; this follows
    ``cr_await`` down to the future it waits for.
    """
    lines = [repr(task)]
    awaited: Any = task.get_coro()
    for _ in range(50):
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    if awaited is not None:
        lines.append(f"  awaiting {awaited!r}")
    return "\n".join(lines)
