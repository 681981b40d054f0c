from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from sdk.worker.job_context import JobContext
from sdk.worker.log_buffer import LogBuffer, LogChunk, truncate_line
from tests.eventually import assert_eventually


class Sink:
    """Records published batches; can be held shut to simulate a slow publisher."""

    def __init__(self) -> None:
        self.batches: list[list[LogChunk]] = []
        self.open = asyncio.Event()
        self.open.set()
        self.fail_next = False

    async def __call__(self, batch: Sequence[LogChunk]) -> None:
        await self.open.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("publish failed")
        self.batches.append(list(batch))

    @property
    def chunks(self) -> list[LogChunk]:
        return [chunk for batch in self.batches for chunk in batch]


async def test_lines_are_numbered_and_published_after_the_interval() -> None:
    sink = Sink()
    buffer = LogBuffer(sink, interval=0.05, clock=lambda: 123.0)
    buffer.write("stdout", "one")
    buffer.write("stderr", "two")
    await assert_eventually(lambda: len(sink.chunks) == 2, timeout=2)
    assert sink.chunks == [
        LogChunk(seq=1, stream="stdout", line="one", ts=123.0),
        LogChunk(seq=2, stream="stderr", line="two", ts=123.0),
    ]
    assert len(sink.batches) == 1
    await buffer.close()


async def test_a_full_batch_is_published_before_the_interval() -> None:
    sink = Sink()
    buffer = LogBuffer(sink, interval=3600, batch_max_lines=10)
    for i in range(25):
        buffer.write("stdout", f"line {i}")
    await assert_eventually(lambda: len(sink.chunks) >= 20, timeout=2)
    assert all(len(batch) <= 10 for batch in sink.batches)
    await buffer.close()
    assert [c.seq for c in sink.chunks] == list(range(1, 26))


async def test_batches_respect_the_byte_bound() -> None:
    sink = Sink()
    async with LogBuffer(sink, interval=3600, batch_max_bytes=100) as buffer:
        for _ in range(10):
            buffer.write("stdout", "x" * 40)
    assert all(sum(len(c.line) for c in batch) <= 100 for batch in sink.batches)
    assert len(sink.chunks) == 10


async def test_close_publishes_the_rest_and_refuses_later_lines() -> None:
    sink = Sink()
    buffer = LogBuffer(sink, interval=3600)
    buffer.write("log", "last words")
    await buffer.close()
    assert [c.line for c in sink.chunks] == ["last words"]
    assert buffer.write("log", "too late") is None
    assert buffer.stats.after_close == 1
    await buffer.close()  # idempotent


async def test_flush_publishes_now() -> None:
    sink = Sink()
    buffer = LogBuffer(sink, interval=3600)
    buffer.write("stdout", "a")
    await buffer.flush()
    assert [c.line for c in sink.chunks] == ["a"]
    await buffer.close()


async def test_long_lines_are_truncated_with_a_marker() -> None:
    sink = Sink()
    async with LogBuffer(sink, interval=3600, max_line_bytes=10) as buffer:
        buffer.write("stdout", "0123456789abcdef")
        buffer.write("stdout", "short")
    assert sink.chunks[0].line == "0123456789 … [truncated 6 bytes]"
    assert sink.chunks[1].line == "short"
    assert buffer.stats.truncated == 1


def test_truncation_never_splits_a_character() -> None:
    line, cut = truncate_line("ééééé", 5)  # 10 bytes
    assert cut
    assert line == "éé … [truncated 6 bytes]"


def test_truncation_counts_bytes_dropped_upstream() -> None:
    line, cut = truncate_line("abc", 10, dropped_bytes=1000)
    assert (line, cut) == ("abc … [truncated 1000 bytes]", True)


async def test_a_full_backlog_asks_writers_to_wait_and_drops_nothing() -> None:
    sink = Sink()
    sink.open.clear()  # the publisher is stuck: nothing drains
    buffer = LogBuffer(sink, interval=0.01, batch_max_lines=100, max_pending_lines=1000)
    woken: list[int] = []
    written = 0
    while not buffer.full:
        buffer.write("stdout", f"line {written}")
        written += 1
    buffer.when_room(lambda: woken.append(buffer.pending))
    for _ in range(500):  # a writer that cannot wait (on the loop) is still accepted
        buffer.write("stdout", f"line {written}")
        written += 1
    await asyncio.sleep(0.05)
    assert woken == []
    sink.open.set()
    await assert_eventually(lambda: woken, timeout=5)
    assert woken[0] <= 500  # woken once half the bound is published
    await buffer.close()
    assert [c.line for c in sink.chunks] == [f"line {i}" for i in range(written)]
    assert (buffer.stats.lost, buffer.stats.waits) == (0, 1)


async def test_the_byte_bound_also_makes_writers_wait() -> None:
    sink = Sink()
    sink.open.clear()
    buffer = LogBuffer(sink, interval=3600, max_pending_bytes=1000)
    for _ in range(10):
        buffer.write("stdout", "y" * 100)
    assert buffer.full
    room = asyncio.ensure_future(buffer.room())
    await asyncio.sleep(0.01)
    assert not room.done()
    sink.open.set()
    await asyncio.wait_for(room, 5)
    await buffer.close()
    assert len(sink.chunks) == 10


async def test_a_failing_publish_is_retried_until_it_goes_through() -> None:
    sink = Sink()
    sink.fail_next = True
    buffer = LogBuffer(sink, interval=3600)
    buffer.write("stdout", "first")
    await buffer.flush()
    buffer.write("stdout", "second")
    await buffer.close()
    assert [c.line for c in sink.chunks] == ["first", "second"]
    assert (buffer.stats.lost, buffer.stats.retries, buffer.stats.published) == (0, 1, 2)


async def test_publishing_gives_up_when_the_attempt_no_longer_holds_its_lease() -> None:
    holding = True

    async def broken(batch: Sequence[LogChunk]) -> None:
        raise ConnectionError("no stream")

    buffer = LogBuffer(broken, interval=3600, keep_trying=lambda: holding)
    buffer.write("stdout", "a")
    flushing = asyncio.ensure_future(buffer.flush())
    await assert_eventually(lambda: buffer.stats.retries >= 2, timeout=5)
    assert not flushing.done()
    holding = False
    await asyncio.wait_for(flushing, 5)
    assert buffer.stats.lost == 1
    await buffer.close()


async def test_publishing_gives_up_after_a_while_even_with_the_lease() -> None:
    async def broken(batch: Sequence[LogChunk]) -> None:
        raise ConnectionError("no stream")

    buffer = LogBuffer(broken, interval=3600, give_up_after=0.2)
    buffer.write("stdout", "a")
    await asyncio.wait_for(buffer.close(), 5)
    assert buffer.stats.lost == 1


async def test_an_attempt_over_its_log_limit_says_so_in_the_log() -> None:
    sink = Sink()
    async with LogBuffer(sink, interval=3600, max_total_bytes=20) as buffer:
        for i in range(10):
            buffer.write("stdout", f"line {i}")  # 6 bytes each
    lines = [(c.stream, c.line) for c in sink.chunks]
    assert lines[:3] == [("stdout", "line 0"), ("stdout", "line 1"), ("stdout", "line 2")]
    assert lines[3][0] == "system" and "reached its limit of 20 bytes" in lines[3][1]
    assert lines[4] == ("system", "[jetwork] 7 line(s) (42 bytes) not kept: this attempt's log "
                                  "is limited to 20 bytes (max_log_bytes)")  # fmt: skip
    assert len(lines) == 5
    assert [c.seq for c in sink.chunks] == [1, 2, 3, 4, 5]


async def test_job_context_log_lines_reach_the_buffer() -> None:
    sink = Sink()
    async with LogBuffer(sink, interval=3600) as buffer:
        ctx = JobContext(workflow_id="wf1", job="build", log_sink=buffer)
        ctx.log.info("resized", width=10)
        ctx.log.warning("two\nlines")
    assert [(c.stream, c.line) for c in sink.chunks] == [
        ("log", "INFO resized width=10"),
        ("log", "WARNING two"),
        ("log", "lines"),
    ]


async def test_a_thread_logging_into_a_full_backlog_waits_for_room() -> None:
    sink = Sink()
    sink.open.clear()
    buffer = LogBuffer(sink, interval=0.01, batch_max_lines=10, max_pending_lines=100)
    ctx = JobContext(workflow_id="wf1", job="build", log_sink=buffer)
    written = 0

    def work() -> None:
        nonlocal written
        for i in range(1000):
            ctx.log.info(f"step {i}")
            written += 1

    thread = asyncio.ensure_future(asyncio.to_thread(work))
    await assert_eventually(lambda: buffer.stats.waits > 0, timeout=5)
    await asyncio.sleep(0.05)
    assert not thread.done() and written < 300  # blocked, not dropping
    sink.open.set()
    await asyncio.wait_for(thread, 10)
    await buffer.close()
    assert [c.line for c in sink.chunks] == [f"INFO step {i}" for i in range(1000)]


async def test_job_context_logging_from_a_thread_is_delivered_in_order() -> None:
    sink = Sink()
    buffer = LogBuffer(sink, interval=3600)
    ctx = JobContext(workflow_id="wf1", job="build", log_sink=buffer)

    def work() -> None:
        assert threading.current_thread() is not threading.main_thread()
        for i in range(50):
            ctx.log.info(f"step {i}")

    await asyncio.to_thread(work)
    await assert_eventually(lambda: buffer.stats.accepted == 50, timeout=2)
    await buffer.close()
    assert [c.line for c in sink.chunks] == [f"INFO step {i}" for i in range(50)]


def test_invalid_bounds_are_rejected() -> None:
    async def noop(batch: Sequence[LogChunk]) -> None:
        return None

    with pytest.raises(ValueError, match="interval must be positive"):
        LogBuffer(noop, interval=0)
