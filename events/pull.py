"""A low-latency pull consumer for batch processors (engine, projector).

nats-py's ``fetch(n)`` waits, once it has had to wait at all, for the full batch or its timeout:
an idle engine would add a whole poll interval to every hop of a workflow. ``PullFeed`` speaks
the pull protocol directly instead: it keeps up to ``window`` messages requested from the server
at all times (several pull requests, each with its own reply subject under one inbox), and
``next_batch`` returns as soon as at least one message is there, with everything else already
delivered. A request whose end was never signalled (lost after a reconnect) is forgotten by a
watchdog after its expiry, so credit is never stuck.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.inline_delivery import subscribe_inline

_log = structlog.get_logger("jetwork.pull")

_NANOS = 1_000_000_000
_ENDED = frozenset({"404", "408", "409"})  # no messages / request expired / request ended
_EXPIRED = "408"


@dataclass
class _Request:
    remaining: int
    deadline: float


class PullFeed:
    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        consumer: str,
        window: int = 512,
        expires: float = 10.0,
        wakeup: asyncio.Event | None = None,
    ) -> None:
        """``wakeup``: set whenever a message arrives, for a reader of several feeds at once
        (``take`` from each, ``top_up`` each)."""
        self._nc = nc
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._window = window
        self._expires = expires
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._requests: dict[str, _Request] = {}
        self._ids = itertools.count()
        self._inbox = ""
        self._sub: Subscription | None = None
        self._wakeup = wakeup
        self._renewals: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await subscribe_inline(self._nc, f"{self._inbox}.*", self._on_message)

    async def stop(self) -> None:
        self._inbox = ""  # (no renewal asks for a reply nobody reads)
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def next_batch(self, max_messages: int, *, timeout: float) -> list[Msg]:
        """Up to ``max_messages`` delivered messages; waits at most ``timeout`` for the first."""
        await self._top_up()
        try:
            first = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < max_messages and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def take(self, max_messages: int) -> list[Msg]:
        """Up to ``max_messages`` delivered messages, without waiting."""
        batch: list[Msg] = []
        while len(batch) < max_messages and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def top_up(self) -> None:
        """Ask for more messages when fewer than half a window are requested or waiting."""
        await self._top_up()

    @property
    def outstanding(self) -> int:
        return sum(request.remaining for request in self._requests.values())

    async def _top_up(self) -> None:
        now = time.monotonic()
        for token, request in list(self._requests.items()):
            if request.deadline < now:  # its end was never signalled: forget it
                del self._requests[token]
        wanted = self._window - self.outstanding - self._queue.qsize()
        # Ask in chunks of at least half a window: fewer, larger requests.
        if wanted < self._window // 2 or not self._inbox:
            return
        token = str(next(self._ids))
        self._requests[token] = _Request(remaining=wanted, deadline=now + self._expires + 2.0)
        pull = {"batch": wanted, "expires": int(self._expires * _NANOS)}
        await self._nc.publish(
            self._next_subject, orjson.dumps(pull), reply=f"{self._inbox}.{token}"
        )

    def _renew(self) -> None:
        """Ask again at once when a request expired. Until then the consumer has no request
        open and nothing it holds is delivered: an engine whose loop tops up once per poll
        interval left a command that arrived then waiting up to that second (1 s; seen as a
        fan-out that took 1.6 s instead of 0.8 s, every ten seconds or so of an idle
        partition). Not on a 409 (a deleted consumer, say): that would ask in a tight loop."""
        task = asyncio.get_running_loop().create_task(self._renewing())
        self._renewals.add(task)
        task.add_done_callback(self._renewals.discard)

    async def _renewing(self) -> None:
        try:
            await self._top_up()
        except Exception as exc:  # closed or reconnecting: the reader's next top-up asks again
            _log.debug("pull request not renewed", subject=self._next_subject, error=repr(exc))

    def _on_message(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            # Delivered messages keep their own subject, so which request they answer is not
            # visible: the server fills requests in order, so charge the oldest one.
            for token, request in self._requests.items():
                request.remaining -= 1
                if request.remaining <= 0:
                    del self._requests[token]
                break
            self._queue.put_nowait(msg)
            if self._wakeup is not None:
                self._wakeup.set()
            return
        if status in _ENDED:  # status messages do arrive on the request's own reply subject
            self._requests.pop(msg.subject.rsplit(".", 1)[-1], None)
            if status == _EXPIRED:
                self._renew()
        # 100 = idle heartbeat; anything else is informational here.
