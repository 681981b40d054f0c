"""One timer for many requests (``events.deadlines``): what is not answered in time fails with
``TimeoutError``, what is answered is left alone, and the table of waiting tokens is emptied of
both."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from events.deadlines import Deadlines
from tests.eventually import assert_eventually


async def test_unanswered_requests_fail_on_time_and_answered_ones_are_left_alone() -> None:
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[Any]] = {}
    deadlines = Deadlines(waiting)
    futures = {}
    for n in range(6):
        token = str(n)
        futures[token] = waiting[token] = loop.create_future()
        deadlines.watch(token, futures[token], 0.05 if n % 2 else 0.2)
    waiting.pop("1").set_result("answered")  # as an inbox files an answer
    waiting.pop("4").set_result("answered too")
    futures["2"].cancel()  # a caller that gave up
    began = loop.time()
    with pytest.raises(TimeoutError):
        await futures["3"]
    assert 0.04 <= loop.time() - began < 0.2  # the short timeout's, not the long one's
    with pytest.raises(TimeoutError):
        await futures["0"]
    assert loop.time() - began >= 0.15
    with pytest.raises(TimeoutError):
        await futures["5"]
    assert futures["1"].result() == "answered" and futures["4"].result() == "answered too"
    await assert_eventually(lambda: waiting == {})


async def test_a_request_made_after_the_queue_emptied_still_gets_its_timer() -> None:
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[Any]] = {}
    deadlines = Deadlines(waiting)
    first = waiting["a"] = loop.create_future()
    deadlines.watch("a", first, 0.02)
    with pytest.raises(TimeoutError):
        await first
    second = waiting["b"] = loop.create_future()
    deadlines.watch("b", second, 0.02)
    with pytest.raises(TimeoutError):
        await second
    assert waiting == {}
    third = waiting["c"] = loop.create_future()
    deadlines.watch("c", third, 10)
    deadlines.cancel()  # the inbox closed: nothing fires any more
    assert not third.done()
