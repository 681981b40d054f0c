"""Cancellation that cannot be lost: the hazard of Python 3.11 and the helpers the worker uses."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest
import structlog

from events.tasks import cancel_and_wait, wait_event


async def _cancel_as_the_result_arrives(wait: str) -> bool:
    """True when a task cancelled in the same loop step as its awaited result carries on."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    carried_on = False

    async def reader() -> None:
        nonlocal carried_on
        if wait == "wait_for":
            await asyncio.wait_for(reply, 10)
        else:
            async with asyncio.timeout(10):
                await reply
        carried_on = True

    task = loop.create_task(reader())
    await asyncio.sleep(0)  # the reader now awaits the reply
    reply.set_result("answer")  # the reply comes in (a subscription callback) ...
    task.cancel()  # ... and the worker stops the reader in the same step
    await asyncio.wait({task})
    return carried_on and not task.cancelled()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for was rebuilt in Python 3.12")
async def test_wait_for_swallows_a_cancellation_that_arrives_with_the_result() -> None:
    """The root cause of jobs stuck `running` (issue 17): the watcher's direct get used this."""
    assert await _cancel_as_the_result_arrives("wait_for")


async def test_asyncio_timeout_does_not_swallow_it() -> None:
    assert not await _cancel_as_the_result_arrives("timeout")


async def test_cancel_and_wait_stops_a_task_that_swallows_a_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed > 2:
                    raise

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, timeout=2, what="stubborn")
    assert task.cancelled() and swallowed == 3


async def test_cancel_and_wait_reports_a_task_that_never_stops() -> None:
    release = asyncio.Event()

    async def deaf() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.ensure_future(deaf())
    await asyncio.sleep(0)
    with structlog.testing.capture_logs() as logs:
        assert not await cancel_and_wait(task, timeout=0.2, what="deaf")
    events = [(e["event"], e["what"]) for e in logs]
    assert events == [("a task did not stop when cancelled", "deaf")]
    assert "in deaf" in logs[0]["stack"]
    release.set()
    task.cancel()
    await asyncio.wait({task})


async def test_cancel_and_wait_passes_on_the_callers_own_cancellation() -> None:
    async def deaf() -> None:
        for _ in range(10):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    task = asyncio.ensure_future(deaf())
    stopper = asyncio.ensure_future(cancel_and_wait(task, timeout=30, what="deaf"))
    await asyncio.sleep(0.1)
    stopper.cancel()
    await asyncio.wait({stopper})
    assert stopper.cancelled()
    await cancel_and_wait(task, timeout=5, what="deaf")


async def test_wait_event() -> None:
    event = asyncio.Event()
    assert not await wait_event(event, 0.01)
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5)
