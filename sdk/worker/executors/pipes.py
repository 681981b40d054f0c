"""A shell job's stdout and stderr, read in the order the job wrote them, with backpressure.

Two ordinary pipes lose the order between the streams: a job that writes ``out 1``, ``err 1``,
``out 2`` faster than the worker reads finds both pipes holding data, and nothing says which
write came first (a shell loop of 1,000 interleaved ``echo``s came out 35,000 of 40,000 lines out
of place here). Sending both through one pipe keeps the order but loses which stream wrote, and
sockets (which could tell the sender) break ``echo … > /dev/stderr``: a socket cannot be opened
through ``/proc/self/fd`` (ENXIO).

So each stream gets a pipe in **packet mode** (``O_DIRECT``: a read returns one write) of **one
page** (``F_SETPIPE_SZ`` 4096: one packet fits): a pipe then holds at most one unread write, and
the job's next write to that stream blocks until the worker has read it. Both pipes are watched
by one edge-triggered epoll, whose ready list is first-in first-out: when both streams hold a
write, the one that became readable first was written first. Reading exactly one packet per
readiness event therefore yields the writes in the order the kernel accepted them (a write over
4 KiB is several packets, read in turn). Measured: 0 of 40,000 interleaved lines out of place,
and random writes of 2 bytes to 9 KB on both streams in order.

The price: each write waits for the worker to read the previous one on its stream. A job writing
line by line runs at about 200,000 lines/s here (400,000 with plain pipes); output written in
blocks (``seq``, compilers, anything using stdio to a pipe) is not slowed. Where packet-mode pipes
do not exist (not Linux), plain pipes are read in one place: each stream in order, the two in the
order the worker read them.

Backpressure: ``pause()`` stops reading (the job blocks on its next write, its lines are never
dropped); ``resume()`` reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import select
from collections import deque
from collections.abc import Callable
from typing import Final

from sdk.worker.log_buffer import LogStream

PACKET_PIPE_BYTES: Final = 4096
_READ_BYTES: Final = 1 << 16
_EPOLLIN: Final = select.EPOLLIN if hasattr(select, "EPOLLIN") else 1
_EPOLLET: Final = select.EPOLLET if hasattr(select, "EPOLLET") else 0
_EPOLLHUP: Final = select.EPOLLHUP if hasattr(select, "EPOLLHUP") else 0

OnLine = Callable[[LogStream, bytes, int], None]
"""``(stream, line without its newline, bytes cut off the line)``."""


class LineSplitter:
    """Splits a byte stream into lines of at most ``max_bytes``; counts what it cut off."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buf = bytearray()
        self._dropped = 0

    def feed(self, data: bytes) -> list[tuple[bytes, int]]:
        """Complete lines in ``data`` (without ``\\n``), each with its count of dropped bytes."""
        if not self._buf and not self._dropped and len(data) <= self._max:
            # The common case (whole short lines): no copy into the buffer.
            *complete, rest = data.split(b"\n")
            if rest:
                self._buf += rest
            return [(line, 0) for line in complete]
        lines: list[tuple[bytes, int]] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._add(data, start, end)
            lines.append(self._take())
            start = end + 1
        self._add(data, start, len(data))
        return lines

    def finish(self) -> tuple[bytes, int] | None:
        """The last line if the stream did not end with a newline."""
        if not self._buf and not self._dropped:
            return None
        return self._take()

    def _add(self, data: bytes, start: int, end: int) -> None:
        room = self._max - len(self._buf)
        keep = min(room, end - start)
        if keep > 0:
            self._buf += data[start : start + keep]
        self._dropped += (end - start) - max(keep, 0)

    def _take(self) -> tuple[bytes, int]:
        line, dropped = bytes(self._buf), self._dropped
        self._buf.clear()
        self._dropped = 0
        return line, dropped


class _Stream:
    __slots__ = ("name", "read_fd", "splitter", "write_fd")

    def __init__(self, name: LogStream, max_line_bytes: int) -> None:
        self.name: LogStream = name
        self.read_fd, self.write_fd = _pipe()
        self.splitter = LineSplitter(max_line_bytes)


class OutputPipes:
    """The stdout and stderr pipes of one job (see the module docstring).

    ``child_fds`` go to the child; ``start()`` closes the worker's copies and starts reading;
    ``on_line`` gets every line as it is complete, in write order. ``closed`` resolves once both
    streams reached their end (every process holding them exited).
    """

    def __init__(self, on_line: OnLine, *, stdout_line_bytes: int, stderr_line_bytes: int) -> None:
        self._on_line = on_line
        self._streams: dict[int, _Stream] = {}
        self._epoll: select.epoll | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: deque[tuple[int, int]] = deque()
        self._final_budget: int | None = None  # bytes still read once draining
        self._reading = False
        self._paused = False
        self.exact = False
        """True when the streams' relative order is the write order (packet-mode pipes)."""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_read = 0.0
        try:
            for name, cap in (("stdout", stdout_line_bytes), ("stderr", stderr_line_bytes)):
                stream = _Stream(name, cap)  # type: ignore[arg-type]
                self._streams[stream.read_fd] = stream
            self.exact = all(_packet_mode(s.write_fd) for s in self._streams.values())
        except BaseException:
            self.close()
            raise

    @property
    def child_fds(self) -> tuple[int, int]:
        out, err = self._streams.values()
        return out.write_fd, err.write_fd

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        """Close the worker's copies of the write ends (the child has its own) and read."""
        loop = self._loop = asyncio.get_running_loop()
        self.last_read = loop.time()
        for stream in self._streams.values():
            with contextlib.suppress(OSError):
                os.close(stream.write_fd)
            stream.write_fd = -1
        if hasattr(select, "epoll"):
            self._epoll = select.epoll()
            mode = _EPOLLIN | (_EPOLLET if self.exact else 0)
            for fd in self._streams:
                self._epoll.register(fd, mode)
        self._add_reader()

    def pause(self) -> None:
        """Stop reading: the job's next write blocks (its pipe holds one packet).

        Ignored while draining the last output (``drain``)."""
        if self._final_budget is not None:
            return
        self._paused = True
        self._remove_reader()

    def resume(self) -> None:
        if self._final_budget is not None and self._final_budget <= 0:
            return  # drained all that is waited for: a late wake-up must not read on
        self._paused = False
        if self._streams:
            self._add_reader()
            if self._loop is not None:  # edge-triggered: what became ready meanwhile is read now
                self._loop.call_soon(self._on_ready)

    async def drain(self, *, idle: float, limit: float, max_bytes: int) -> None:
        """Read what is left, without backpressure, until both streams ended, nothing came for
        ``idle`` seconds, ``limit`` seconds passed or ``max_bytes`` were read.

        Called once the job's process group is gone: what its own processes wrote is then at
        most one packet per stream (read even if the log's backlog is full); only processes that
        left the group (``setsid``) can hold the pipes open, and their output is not waited for.
        """
        self._final_budget = max_bytes
        if self._paused:
            self.resume()
        loop = asyncio.get_running_loop()
        ends = loop.time() + limit
        self.last_read = loop.time()
        while not self.closed.done() and self._final_budget > 0:
            left = min(self.last_read + idle, ends) - loop.time()
            if left <= 0:
                return
            await asyncio.wait([self.closed], timeout=min(left, 0.1))

    def close(self) -> None:
        """Stop reading, hand on the unfinished last lines, close every descriptor."""
        self._remove_reader()
        for fd in list(self._streams):
            self._end(fd)
        for stream in self._streams.values():
            if stream.write_fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(stream.write_fd)
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if not self.closed.done():
            self.closed.set_result(None)

    # --- reading ---------------------------------------------------------------------------------

    def _add_reader(self) -> None:
        if self._reading or self._loop is None:
            return
        if self._epoll is not None:
            self._loop.add_reader(self._epoll.fileno(), self._on_ready)
        else:  # pragma: no cover - platforms without epoll
            for fd in self._streams:
                self._loop.add_reader(fd, self._read_plain, fd)
        self._reading = True

    def _remove_reader(self) -> None:
        if not self._reading or self._loop is None:
            return
        if self._epoll is not None:
            self._loop.remove_reader(self._epoll.fileno())
        else:  # pragma: no cover
            for fd in self._streams:
                self._loop.remove_reader(fd)
        self._reading = False

    def _on_ready(self) -> None:
        # Edge-triggered: a harvested event is not reported again, so events harvested before a
        # pause wait in `_ready` (in their order) rather than being lost.
        while not self._paused and self._epoll is not None:
            if not self._ready:
                self._ready.extend(self._epoll.poll(0))
                if not self._ready:
                    return
            fd, mask = self._ready.popleft()
            if fd not in self._streams:
                continue
            if self.exact:
                self._read_packet(fd, hung_up=bool(mask & _EPOLLHUP))
            else:
                self._read_plain(fd)

    def _read_packet(self, fd: int, *, hung_up: bool) -> None:
        """One packet (one write of the job), or the end of the stream.

        With the writers gone (``hung_up``) no new edge will come: read to the end now.
        """
        if hung_up:
            self._read_plain(fd)
            if fd in self._streams:  # paused half-way: finish on resume
                self._ready.appendleft((fd, _EPOLLHUP))
            return
        try:
            data = os.read(fd, _READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._end(fd)
            return
        self._deliver(fd, data)

    def _read_plain(self, fd: int) -> None:
        while fd in self._streams and not self._paused:
            try:
                data = os.read(fd, _READ_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._end(fd)
                return
            self._deliver(fd, data)

    def _deliver(self, fd: int, data: bytes) -> None:
        stream = self._streams[fd]
        if self._loop is not None:
            self.last_read = self._loop.time()
        if self._final_budget is not None:
            self._final_budget -= len(data)
            if self._final_budget <= 0:  # enough of a process that left the job: stop reading
                self._paused = True
                self._remove_reader()
        for line, dropped in stream.splitter.feed(data):
            self._on_line(stream.name, line, dropped)

    def _end(self, fd: int) -> None:
        stream = self._streams.pop(fd, None)
        if stream is None:
            return
        if self._epoll is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        if self._epoll is None and self._reading and self._loop is not None:  # pragma: no cover
            self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
        if (last := stream.splitter.finish()) is not None:
            self._on_line(stream.name, *last)
        if not self._streams:
            self._remove_reader()
            if not self.closed.done():
                self.closed.set_result(None)


def _pipe() -> tuple[int, int]:
    """A pipe whose read end does not block; in packet mode of one page where Linux allows."""
    flags = os.O_CLOEXEC | getattr(os, "O_DIRECT", 0)
    try:
        read_fd, write_fd = os.pipe2(flags)
    except (OSError, AttributeError):
        read_fd, write_fd = os.pipe()
        os.set_inheritable(read_fd, False)
        os.set_inheritable(write_fd, False)
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(write_fd, setsize, PACKET_PIPE_BYTES)
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


def _packet_mode(write_fd: int) -> bool:
    direct = getattr(os, "O_DIRECT", 0)
    getsize = getattr(fcntl, "F_GETPIPE_SZ", None)
    if not direct or getsize is None or not fcntl.fcntl(write_fd, fcntl.F_GETFL) & direct:
        return False
    return bool(fcntl.fcntl(write_fd, getsize) <= PACKET_PIPE_BYTES)
