"""Pulling dispatch messages: a label set consumer's pull loop, and prefetching for short jobs.

The worker speaks JetStream's pull protocol itself instead of using nats-py's ``fetch``: every
pull request gets its own reply subject under one long-lived inbox subscription, so a message
that arrives after its request ended is still seen (and run or released at once) rather than
parked in a client-side queue while its lease runs out, and a request that never ends (a lost
status after a reconnect, the reported fetch stalls) is abandoned by a watchdog.

A pull asks for at most as many messages as the worker has free slots (shared between all its
consumers; a handler allowed fewer jobs at once than the worker also needs one of its own),
divided between the consumers that deliver (``Puller.delivering``: a message in the last second,
and more pending after it). A consumer that does not while others do asks for one message: an
idle label set does not halve the batches of a busy one (a worker that had run one shell job
pulled its no-op jobs two at a time instead of four, measured: docs/performance.md). A message
that arrives when no slot is left (several consumers raced for the last one) is released with
``nak`` for another worker; it was never claimed, so that is harmless.

Slots and lanes are in ``sdk.worker.slots``, the consumers' creation in ``sdk.worker.consumers``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from events import subjects
from events.dispatch import LabelSet
from events.errors import StoreError
from events.inline_delivery import subscribe_inline
from sdk.worker.consumers import MAX_ACK_PENDING, NANOS, ensure_consumer
from sdk.worker.lifecycle import PollFailed
from sdk.worker.slots import Lane, Slots, handler_of, lanes_for

__all__ = [
    "DRAIN_TIMEOUT",
    "MAX_ACK_PENDING",
    "MAX_PULL_BATCH",
    "SHORT_JOB",
    "WATCHDOG_MARGIN",
    "Lane",
    "OnMessage",
    "Puller",
    "Slots",
    "ensure_consumer",
    "handler_of",
    "lanes_for",
]

SHORT_JOB: Final = 0.2
"""Jobs that hold a slot less than this (on average) are prefetched: one message per slot waits
in the worker for the next free slot, saving a pull's round trip per job. Longer jobs are not:
a message waiting behind a long job is better taken by an idle worker."""
MAX_PULL_BATCH: Final = 256
DELIVERING_WITHIN: Final = 1.0
"""A consumer that delivered nothing for this long is idle: a pull's share of the free slots
goes to the consumers that deliver (``Puller._pull``)."""
WATCHDOG_MARGIN: Final = 2.0
"""Seconds past a pull request's expiry after which it is given up for lost."""
DRAIN_TIMEOUT: Final = 2.0

_log = structlog.get_logger("jetwork.worker")


async def _nak(msg: Msg) -> None:
    with contextlib.suppress(Exception):
        await msg.nak()


@dataclass(slots=True)
class _Request:
    """The one open pull request of a puller (messages do not say which request they answer:
    they keep their own subject; only status messages arrive on the request's reply subject)."""

    token: str
    batch: int
    delivered: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    sent_at: float = 0.0  # monotonic; set for the long polls a ``Ladder`` does not wait on


OnMessage = Callable[[Msg, "Puller"], None]


class Puller:
    """Pulls one label set's consumer while ``slots`` has free ones.

    ``on_message(msg, puller)`` receives each dispatch together with the slot it took; the
    receiver must ``puller.slots.release()`` when done with it.
    """

    def __init__(
        self,
        nc: NATS,
        labelset: LabelSet,
        *,
        slots: Slots,
        lease_ttl: float,
        poll_interval: float,
        on_message: OnMessage,
        peers: Callable[[], int] = lambda: 1,
        delivering_peers: Callable[[], int] | None = None,
        stream: str = subjects.EVENTS_STREAM,
        on_poll_failed: Callable[[PollFailed], None] = lambda _: None,
    ) -> None:
        self._on_poll_failed = on_poll_failed
        self._nc = nc
        self.labelset = labelset
        self.slots = slots
        self._wanted_lease = lease_ttl
        self.lease_ttl = lease_ttl
        """The lease that applies (the consumer's ack wait, known once it is ensured)."""
        self._poll = poll_interval
        self._on_message = on_message
        self._peers = peers
        # How many of the pullers sharing the slots deliver (None: count them all).
        self._delivering_peers = delivering_peers or peers
        self._last_delivery = time.monotonic()  # (a new consumer counts as delivering)
        # Whether the consumer held more after its latest delivery (its ``num_pending``).
        self._backlog = True
        self._stream = stream
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{labelset.consumer}"
        self._inbox = nc.new_inbox()
        self._ids = itertools.count(1)
        self._request: _Request | None = None
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ensured = asyncio.Event()
        self._missing = True
        self.stalls = 0
        """Pull requests given up by the watchdog (neither messages nor a status arrived)."""
        # Prefetched dispatches waiting for a slot (short jobs only), oldest first.
        self._waiting: collections.deque[tuple[Msg, float]] = collections.deque()
        self._room = asyncio.Event()
        self._giving_back: set[asyncio.Task[None]] = set()
        self._resumed = asyncio.Event()
        self._resumed.set()
        slots.on_release(self._take_waiting)
        self.prefetching = True
        """False in a ``Ladder``: a dispatch held for the next free slot would start before a
        higher priority's queued after it."""
        self.on_request_end: Callable[[], None] | None = None
        """Called when a pull request ends (a ``Ladder`` pulls its levels in turn)."""

    @property
    def prefetch(self) -> int:
        """How many dispatches may wait here for a slot: one per slot while jobs are short."""
        if self.slots.typical_hold < SHORT_JOB and self.prefetching:
            return self.slots.size
        return 0

    def _take_waiting(self) -> None:
        """A slot freed up: start the oldest waiting dispatch in it (or let the loop pull)."""
        stale = time.monotonic() - self.lease_ttl / 3  # waited a third of its lease: give it back
        while self._waiting and self.slots.free > 0:
            msg, since = self._waiting.popleft()
            if since < stale or self._stopping or self.paused:
                self._give_back(msg)
            elif self.slots.try_take():
                self._start(msg)
        self._room.set()

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def set_paused(self, paused: bool) -> None:
        """Paused: no pull request is sent, and what arrives (an open request's messages, the
        prefetched ones) is released for other workers. Running jobs are not touched."""
        if paused == self.paused:
            return
        if not paused:
            self._resumed.set()
            return
        self._resumed.clear()
        while self._waiting:
            self._give_back(self._waiting.popleft()[0])

    @property
    def ready(self) -> asyncio.Event:
        """Set once the consumer exists (first successful ensure)."""
        return self._ensured

    async def start(self, *, pulling: bool = True) -> None:
        """Subscribe to the answers; pull on its own (``pulling``) or as a ``Ladder``'s level."""
        self._sub = await subscribe_inline(self._nc, f"{self._inbox}.*", self._on_reply)
        if pulling:
            self._task = asyncio.get_running_loop().create_task(
                self._loop(), name=f"jetwork-pull-{self.labelset.consumer}"
            )

    async def stop_pulling(self) -> None:
        """Stop its own pull loop (a ``Ladder`` takes it over); what still arrives is handled as
        before, and what it holds for a slot is released."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._request = None
        while self._waiting:
            self._give_back(self._waiting.popleft()[0])

    async def stop(self) -> None:
        """Stop pulling; whatever the server still sends for open requests is released (nak)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            # drain = UNSUB + a round trip: open pull requests lose interest and the server
            # drops them; messages it had sent before are still handled (released) here.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sub.drain(), DRAIN_TIMEOUT)
            self._sub = None
        while self._waiting:  # prefetched, never claimed: for another worker
            await _nak(self._waiting.popleft()[0])
        if self._giving_back:
            await asyncio.gather(*self._giving_back, return_exceptions=True)

    async def _loop(self) -> None:
        backoff = 0.1
        while not self._stopping:
            if self._missing:
                try:
                    await self._ensure()
                except StoreError as exc:
                    _log.warning(
                        "cannot ensure consumer, retrying",
                        labelset=self.labelset.token,
                        error=str(exc),
                        retry_in=backoff,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._poll)
                    continue
                backoff = 0.1
            await self._wait_for_room()
            await self._resumed.wait()
            if self._stopping:
                return
            await self._pull()

    async def _wait_for_room(self) -> None:
        """Until a slot is free, or a prefetched dispatch may wait for one."""
        while self.slots.free <= 0 and len(self._waiting) >= self.prefetch:
            self._room.clear()
            await self._room.wait()

    @property
    def missing(self) -> bool:
        """The consumer must be ensured (again) before it is pulled."""
        return self._missing

    @property
    def request_open(self) -> bool:
        """A pull request is out and has not ended: whatever comes to the consumer comes here."""
        request = self._request
        return request is not None and not request.done.is_set()

    async def ensure(self) -> bool:
        """Ensure the consumer; False (logged) when it cannot be now."""
        try:
            await self._ensure()
        except StoreError as exc:
            _log.warning(
                "cannot ensure consumer, retrying", labelset=self.labelset.route, error=str(exc)
            )
            return False
        return True

    async def pull_now(self, batch: int) -> None:
        """One ``no_wait`` request: what the consumer holds now, up to ``batch``, and its end."""
        request = await self._send(batch, {"batch": batch, "no_wait": True})
        if request is None:
            return
        try:
            async with asyncio.timeout(self._poll + WATCHDOG_MARGIN):
                await request.done.wait()
        except TimeoutError:
            self._stalled()
            self._request = None

    async def long_poll(self, batch: int) -> None:
        """Send a request that waits up to ``poll_interval`` for messages; not awaited: its end
        calls ``on_request_end``."""
        request = await self._send(batch, {"batch": batch, "expires": int(self._poll * NANOS)})
        if request is not None:
            request.sent_at = time.monotonic()

    def give_up_stalled(self, now: float) -> bool:
        """Abandon a long poll that neither delivered nor ended in time (the watchdog)."""
        request = self._request
        if request is None or request.done.is_set() or not request.sent_at:
            return False
        if now - request.sent_at < self._poll + WATCHDOG_MARGIN:
            return False
        self._stalled()
        self._request = None
        return True

    async def _send(self, batch: int, body: dict[str, Any]) -> _Request | None:
        request = _Request(token=str(next(self._ids)), batch=batch)
        self._request = request
        try:
            await self._nc.publish(
                self._next_subject, orjson.dumps(body), reply=f"{self._inbox}.{request.token}"
            )
        except NatsError as exc:  # e.g. the connection is closed or reconnecting
            self._request = None
            self._on_poll_failed(PollFailed(self.labelset.token, repr(exc)))
            _log.warning("pull request failed", labelset=self.labelset.route, error=repr(exc))
            await asyncio.sleep(min(1.0, self._poll))
            return None
        return request

    def _stalled(self) -> None:
        self.stalls += 1
        _log.warning(
            "pull request got no answer, pulling again",
            labelset=self.labelset.route,
            waited=self._poll + WATCHDOG_MARGIN,
        )

    async def _ensure(self) -> None:
        lease = await ensure_consumer(
            self._nc, self.labelset, lease_ttl=self._wanted_lease, stream=self._stream
        )
        if abs(lease - self._wanted_lease) > 1e-6 and lease != self.lease_ttl:
            _log.warning(
                "label set consumer has another lease; using it",
                labelset=self.labelset.token,
                consumer=self.labelset.consumer,
                lease_ttl=lease,
                configured_lease_ttl=self._wanted_lease,
            )
        self.lease_ttl = lease
        self._missing = False
        self._ensured.set()

    async def _pull(self) -> None:
        free = max(0, self.slots.free) + max(0, self.prefetch - len(self._waiting))
        busy = self._delivering_peers()
        if busy and not self.delivering:
            batch = 1  # idle while others deliver: wait for one, leave the slots to them
        else:
            batch = min(MAX_PULL_BATCH, max(1, free // max(1, busy or self._peers())))
        request = await self._send(batch, {"batch": batch, "expires": int(self._poll * NANOS)})
        if request is None:
            return
        try:
            await asyncio.wait_for(request.done.wait(), self._poll + WATCHDOG_MARGIN)
        except TimeoutError:
            self._stalled()
        finally:
            self._request = None

    def _on_reply(self, msg: Msg) -> None:
        try:
            self._handle_reply(msg)
        except Exception:  # nats-py would swallow it silently
            _log.exception("handling a pulled message failed", labelset=self.labelset.token)

    def _handle_reply(self, msg: Msg) -> None:
        request = self._request
        status = msg.headers.get("Status") if msg.headers and not msg.reply else None
        if status is not None:
            if request is not None and msg.subject.rpartition(".")[2] != request.token:
                request = None  # the end of an earlier request the watchdog gave up on
            self._on_status(status, msg, request)
            return
        self._last_delivery = time.monotonic()
        self._backlog = msg.metadata.num_pending > 0
        if request is not None:
            request.delivered += 1
            if request.delivered >= request.batch:
                self._request_ended(request)
        if self._stopping or self.paused:
            self._give_back(msg)
        elif self.slots.try_take():
            self._start(msg)
        elif len(self._waiting) < self.prefetch:
            self._waiting.append((msg, time.monotonic()))
        else:
            self._give_back(msg)

    @property
    def delivering(self) -> bool:
        """Whether the consumer delivered a message in the last ``DELIVERING_WITHIN`` seconds
        and held more after it. (Not "its last pull delivered": a long poll that got some of its
        batch stays open until it expires, seconds after the label set's last job. And not for
        a second after its last job: a label set whose burst just ended would keep half the
        slots from the one that starts then, as S3's fan-out after S1's shell jobs showed.)"""
        if not self._backlog:
            return False
        return time.monotonic() - self._last_delivery < DELIVERING_WITHIN

    def _request_ended(self, request: _Request) -> None:
        request.done.set()
        if self.on_request_end is not None:
            self.on_request_end()

    def _start(self, msg: Msg) -> None:
        try:
            self._on_message(msg, self)
        except Exception:
            self.slots.release()
            _log.exception("dispatch handler failed", labelset=self.labelset.token)
            self._give_back(msg)

    def _give_back(self, msg: Msg) -> None:
        """Release a dispatch this worker will not run, for another worker (never claimed)."""
        task = asyncio.get_running_loop().create_task(_nak(msg))
        self._giving_back.add(task)
        task.add_done_callback(self._giving_back.discard)

    def _on_status(self, status: str, msg: Msg, request: _Request | None) -> None:
        if status == "100":  # idle heartbeat
            return
        if request is not None:
            self._request_ended(request)
        if status in ("404", "408"):  # no messages / request expired: the normal end of a pull
            return
        description = (msg.headers or {}).get("Description", "")
        if status == "503" or "Deleted" in description:
            self._missing = True
        _log.info(
            "pull request ended",
            labelset=self.labelset.token,
            status=status,
            description=description,
        )
