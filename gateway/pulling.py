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

**Dispatches at hand.** While claims come often on a feed (less than ``OFTEN`` apart), it keeps up
to ``PREFETCH`` dispatches at hand: a claim takes one at once instead of waiting for its pull's
round trip, and asks for one more (a ``no_wait`` request for none in particular), so the NATS
messages per job stay the same. A dispatch that came for a claim already served also stays at
hand. One that no claim took within ``HOLD`` is released (``nak``) for anyone else, so a gateway
whose workers stopped calling holds nothing back for longer; a killed gateway's are delivered
again after the consumer's ack wait. The dispatch's ack deadline runs while it is at hand:
``Pulled.kept`` says for how long, so that a lease kept by that deadline is renewed at its claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
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
PREFETCH: Final = 2
"""Dispatches a feed keeps at hand while claims come often."""
HOLD: Final = 0.2
"""Seconds a dispatch at hand waits for a claim before it is released for someone else."""
OFTEN: Final = 0.05
"""Claims on a feed closer together than this (seconds) make it keep dispatches at hand."""

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
    claim: _Claim | None
    """None: a request for a dispatch to keep at hand."""


@dataclass(frozen=True, slots=True)
class Pulled:
    msg: Msg
    kept: float = 0.0
    """Seconds it was at hand before a claim took it (its ack deadline ran meanwhile)."""


class Feed:
    """One label set's consumer, pulled for the claims that wait on it."""

    def __init__(
        self, nc: NATS, labelset: LabelSet, *, stream: str, often: float = OFTEN, hold: float = HOLD
    ) -> None:
        self._nc = nc
        self._often_within = often
        self._hold = hold
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
        self._kept: deque[tuple[Msg, float]] = deque()  # (dispatch, when it came)
        self._keeping = 0  # open requests for dispatches to keep
        self._last_claim = -often
        self._often = False
        self._releases: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), 2.0)
        self._often = False
        while self._kept:
            await _nak(self._kept.popleft()[0])

    def take(self) -> Pulled | None:
        """A dispatch at hand for a claim, if any; counts the claim to tell whether they come
        often."""
        now = time.monotonic()
        self._often = now - self._last_claim < self._often_within
        self._last_claim = now
        self._release_stale(now)
        if not self._kept:
            return None
        msg, came = self._kept.popleft()
        return Pulled(msg, kept=now - came)

    async def top_up(self) -> None:
        """Ask for dispatches to keep at hand, up to ``PREFETCH``, while claims come often."""
        while self._often and len(self._kept) + self._keeping < PREFETCH:
            self._keeping += 1
            await self.ask(None, wait=0)

    async def ask(self, claim: _Claim | None, *, wait: float) -> None:
        token = str(next(self._ids))
        self._open[token] = _Request(token, claim)
        if claim is not None:
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
        claim = oldest.claim if oldest is not None else None
        target = claim if claim is not None and claim.waiting else self._first_waiting()
        if target is not None:
            target.give(msg)
        elif self._often and len(self._kept) < PREFETCH:
            self._keep(msg)
        else:
            await _nak(msg)
        if oldest is not None:
            self._close(oldest.token)

    def _keep(self, msg: Msg) -> None:
        self._kept.append((msg, time.monotonic()))
        asyncio.get_running_loop().call_later(self._hold, self._release_stale, None)

    def _release_stale(self, now: float | None) -> None:
        now = time.monotonic() if now is None else now
        while self._kept and now - self._kept[0][1] >= self._hold:
            task = asyncio.get_running_loop().create_task(_nak(self._kept.popleft()[0]))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    def _first_waiting(self) -> _Claim | None:
        while self._waiting and not self._waiting[0].waiting:
            self._waiting.popleft()
        return self._waiting[0] if self._waiting else None

    def _close(self, token: str) -> None:
        request = self._open.pop(token, None)
        if request is None:
            return
        claim = request.claim
        if claim is None:
            self._keeping -= 1
            return
        claim.requests.discard((self.labelset.consumer, token))
        if not claim.requests:
            claim.give(None)  # every request it made has ended without a message for it
        while self._waiting and not self._waiting[0].waiting:
            self._waiting.popleft()


class OneShotPuller:
    """The feeds of the label sets in use; ``pull_one`` is what a claim calls."""

    def __init__(
        self,
        nc: NATS,
        *,
        consumer_lease: float,
        stream: str = subjects.EVENTS_STREAM,
        often: float = OFTEN,
        hold: float = HOLD,
    ) -> None:
        self._nc = nc
        self._often = often
        self._hold = hold
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
                    feed = Feed(
                        self._nc, labelset, stream=self._stream, often=self._often, hold=self._hold
                    )
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

    async def pull_one(self, labelsets: Sequence[LabelSet], *, wait: float) -> Pulled | None:
        """A dispatch from any of ``labelsets`` within ``wait`` seconds (0: what is there now).

        With priority levels among them (``events.priority``), what the levels hold now is
        taken highest first (a ``no_wait`` request per level until one has a dispatch), before
        waiting on all of them.
        """
        if not labelsets:
            return None
        feeds = [await self.feed(labelset) for labelset in labelsets]
        if any(labelset.priority is not None for labelset in labelsets):
            feeds.sort(key=lambda feed: feed.labelset.rank, reverse=True)
            ranked = await self._highest_first(feeds)
            return ranked if ranked is not None else await self._wait_for_one(feeds, wait=wait)
        for feed in feeds:
            at_hand = feed.take()
            if at_hand is not None:
                await feed.top_up()
                return at_hand
        return await self._wait_for_one(feeds, wait=wait)

    async def _highest_first(self, feeds: Sequence[Feed]) -> Pulled | None:
        for feed in feeds:
            at_hand = feed.take()
            if at_hand is None:
                at_hand = await self._wait_for_one([feed], wait=0)
            if at_hand is not None:
                return at_hand
        return None

    async def _wait_for_one(self, feeds: Sequence[Feed], *, wait: float) -> Pulled | None:
        loop = asyncio.get_running_loop()
        claim = _Claim(loop.create_future())
        for feed in feeds:
            await feed.ask(claim, wait=wait)
            await feed.top_up()
        try:
            got = await asyncio.wait_for(
                asyncio.shield(claim.future), max(wait, 0) + WATCHDOG_MARGIN
            )
        except TimeoutError:
            claim.give(None)  # a message that still comes goes to another claim, or back
            got = claim.future.result()
        except asyncio.CancelledError:
            claim.give(None)
            got = claim.future.result()
            if got is not None:  # it came as the caller gave up: never claimed, release it
                await _nak(got)
            raise
        return Pulled(got) if got is not None else None


async def _nak(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.nak()
