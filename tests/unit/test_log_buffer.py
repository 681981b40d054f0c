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
    assert buffer.stats.dropped == 1
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


async def test_a_flood_stays_bounded_and_reports_what_it_dropped() -> None:
    sink = Sink()
    sink.open.clear()  # the publisher is stuck: nothing drains
    buffer = LogBuffer(sink, interval=0.01, batch_max_lines=100, max_pending_lines=1000)
    total = 100_000
    for i in range(total):
        buffer.write("stdout", f"line {i}")
        assert buffer.pending <= 1000 + 1
    assert buffer.stats.dropped >= total - 1000 - 100
    sink.open.set()
    await assert_eventually(lambda: buffer.pending == 0, timeout=5)
    buffer.write("stdout", "after the flood")
    await buffer.close()
    notices = [c for c in sink.chunks if c.stream == "system"]
    assert len(notices) == 1
    assert f"{buffer.stats.dropped} log line(s) dropped" in notices[0].line
    assert notices[0].seq == sink.chunks[-1].seq - 1  # right before the line that fitted again
    assert [c.seq for c in sink.chunks] == list(range(1, len(sink.chunks) + 1))
    assert len(sink.chunks) + buffer.stats.dropped == total + 2


async def test_the_byte_bound_also_drops() -> None:
    sink = Sink()
    sink.open.clear()
    buffer = LogBuffer(sink, interval=3600, max_pending_bytes=1000)
    for _ in range(100):
        buffer.write("stdout", "y" * 100)
    assert buffer.pending_bytes <= 1000
    assert buffer.stats.dropped == 90
    sink.open.set()
    await buffer.close()
    assert sink.chunks[-1].line.startswith("[jetwork] 90 log line(s) dropped")


async def test_a_failing_publish_loses_that_batch_only() -> None:
    sink = Sink()
    sink.fail_next = True
    buffer = LogBuffer(sink, interval=3600)
    buffer.write("stdout", "lost")
    await buffer.flush()
    buffer.write("stdout", "kept")
    await buffer.close()
    assert [c.line for c in sink.chunks] == ["kept"]
    assert (buffer.stats.lost, buffer.stats.published) == (1, 1)


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
