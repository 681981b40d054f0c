"""Dispatches for claims: one pull feed per label set consumer, shared by all claims.

A dispatch is a ``JobQueued`` event, delivered by its label set's consumer on the events stream.

A claim asks every label set it serves for one message: a pull request of one message (``no_wait``
when the claim does not long-poll, else ``expires``) on the feed's one long-lived inbox
subscription. A delivered message keeps its own subject, so it does not say which request it
answers; JetStream serves a consumer's pull requests in the order they came, so the feed gives a
message to the oldest open request's claim (or, if that claim has one already, to the oldest
claim still waiting; or else releases it with ``nak`` for someone else at once). A request ends
when its message came or a status says so (404 no messages, 408 expired). A claim with no open
request left and no message gets none.

One subscription per label set instead of one per claim saves the server a SUB and an UNSUB per
claim, and no message is ever in flight to an inbox nobody reads (which would wait out the
consumer's ack wait before anyone saw it again).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.dispatch import LabelSet
from sdk.worker.pull import ensure_consumer

_NANOS: Final = 1_000_000_000
WATCHDOG_MARGIN: Final = 2.0
"""Seconds past a claim's wait after which its requests are given up for lost."""

_log = structlog.get_logger("jetwork.gateway")


@dataclass(eq=False)
class _Claim:
    future: asyncio.Future[Msg | None]
    requests: set[tuple[str, str]] = field(default_factory=set)  # (consumer, token)

    @property
    def waiting(self) -> bool:
        return not self.future.done()

    def give(self, msg: Msg | None) -> None:
        if not self.future.done():
            self.future.set_result(msg)


@dataclass(eq=False)
class _Request:
    token: str
    claim: _Claim


class Feed:
    """One label set's consumer, pulled for the claims that wait on it."""

    def __init__(self, nc: NATS, labelset: LabelSet, *, stream: str) -> None:
        self._nc = nc
        self.labelset = labelset
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{labelset.consumer}"
        self._inbox = nc.new_inbox()
        self._ids = itertools.count(1)
        self._open: OrderedDict[str, _Request] = OrderedDict()
        self._waiting: deque[_Claim] = deque()
        self._sub: Any = None
        self.broken = False
        """A status said the consumer is gone: ensure it again before the next pull."""
        self.ack_wait = 0.0
        """The consumer's ack wait (seconds), as the server has it (it may have been made by a
        worker with another lease)."""

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), 2.0)

    async def ask(self, claim: _Claim, *, wait: float) -> None:
        token = str(next(self._ids))
        self._open[token] = _Request(token, claim)
        claim.requests.add((self.labelset.consumer, token))
        self._waiting.append(claim)
        body: dict[str, Any] = {"batch": 1}
        body |= {"no_wait": True} if wait <= 0 else {"expires": int(wait * _NANOS)}
        try:
            await self._nc.publish(self._next, orjson.dumps(body), reply=f"{self._inbox}.{token}")
        except Exception:
            self._close(token)
            raise

    async def _on_reply(self, msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers and not msg.reply else None
        if status is not None:
            if status == "100":
                return  # an idle heartbeat ends nothing
            if status not in ("404", "408"):
                description = (msg.headers or {}).get("Description", "")
                _log.info("pull request ended", consumer=self.labelset.consumer, status=status,
                          description=description)  # fmt: skip
                if status in ("409", "503") or "Deleted" in description:
                    self.broken = True
            self._close(msg.subject.rpartition(".")[2])
            return
        # Requests are served in order: this message answers the oldest open one.
        oldest = next(iter(self._open.values()), None)
        target = oldest.claim if oldest is not None and oldest.claim.waiting else None
        target = target or self._first_waiting()
        if target is not None:
            target.give(msg)
        else:
            with contextlib.suppress(Exception):
                await msg.nak()
        if oldest is not None:
            self._close(oldest.token)

    def _first_waiting(self) -> _Claim | None:
        while self._waiting and not self._waiting[0].waiting:
            self._waiting.popleft()
        return self._waiting[0] if self._waiting else None

    def _close(self, token: str) -> None:
        request = self._open.pop(token, None)
        if request is None:
            return
        claim = request.claim
        claim.requests.discard((self.labelset.consumer, token))
        if not claim.requests:
            claim.give(None)  # every request it made has ended without a message for it
        while self._waiting and not self._waiting[0].waiting:
            self._waiting.popleft()


class OneShotPuller:
    """The feeds of the label sets in use; ``pull_one`` is what a claim calls."""

    def __init__(
        self, nc: NATS, *, consumer_lease: float, stream: str = subjects.EVENTS_STREAM
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._consumer_lease = consumer_lease
        self._feeds: dict[str, Feed] = {}
        self._lock = asyncio.Lock()

    async def feed(self, labelset: LabelSet) -> Feed:
        feed = self._feeds.get(labelset.consumer)
        if feed is not None and not feed.broken:
            return feed
        async with self._lock:
            feed = self._feeds.get(labelset.consumer)
            if feed is None or feed.broken:
                ack_wait = await ensure_consumer(
                    self._nc, labelset, lease_ttl=self._consumer_lease, stream=self._stream
                )
                if feed is None:
                    feed = Feed(self._nc, labelset, stream=self._stream)
                    await feed.start()
                    self._feeds[labelset.consumer] = feed
                feed.ack_wait = ack_wait
                feed.broken = False
        return feed

    def ack_wait(self, consumer: str) -> float:
        """The ack wait of a consumer pulled here (0 for one that is not)."""
        feed = self._feeds.get(consumer)
        return feed.ack_wait if feed is not None else 0.0

    async def stop(self) -> None:
        await asyncio.gather(*(feed.stop() for feed in self._feeds.values()))
        self._feeds.clear()

    async def pull_one(self, labelsets: Sequence[LabelSet], *, wait: float) -> Msg | None:
        """A dispatch from any of ``labelsets`` within ``wait`` seconds (0: what is there now)."""
        if not labelsets:
            return None
        loop = asyncio.get_running_loop()
        claim = _Claim(loop.create_future())
        for labelset in labelsets:
            feed = await self.feed(labelset)
            await feed.ask(claim, wait=wait)
        try:
            return await asyncio.wait_for(
                asyncio.shield(claim.future), max(wait, 0) + WATCHDOG_MARGIN
            )
        except TimeoutError:
            claim.give(None)  # a message that still comes goes to another claim, or back
            return claim.future.result()
        except asyncio.CancelledError:
            claim.give(None)
            got = claim.future.result()
            if got is not None:  # it came as the caller gave up: never claimed, release it
                with contextlib.suppress(Exception):
                    await got.nak()
            raise
