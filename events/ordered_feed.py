"""An ordered consumer whose deliveries are handled in nats-py's read loop.

What nats-py's ``ordered_consumer`` does (an ephemeral push consumer, no acks, flow control and
idle heartbeats, recreated from the last stream sequence delivered whenever a gap or a stall
shows), with each delivery handed to a plain function as it is parsed: no ``Msg``, no queue, no
task per message (``events.inline_delivery``). The projector reads every event of its
partitions this way; a rebuild reads the whole log.

- A delivery's reply subject carries its stream and consumer sequences; a consumer sequence that
  is not the next one is a gap (a message lost on the way): the consumer is recreated from the
  last stream sequence handed over, and nothing after the gap is handed over twice or skipped.
- An idle heartbeat names the last consumer sequence sent; one we did not get is a gap too.
- No delivery and no heartbeat for ``_MISSED_HEARTBEATS`` heartbeats (the server restarted and
  the consumer with it, the connection was down) recreates it the same way.
- Flow control: the server waits for an answer every so often. It is answered at once, unless
  ``may_flow`` says the reader is behind, then once ``resume`` is called: what the reader has
  not taken yet stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.inline_delivery import subscribe_raw

_log = structlog.get_logger("jetwork.feed")
_HEARTBEAT = 5.0  # seconds between the server's idle heartbeats
_MISSED_HEARTBEATS = 2.5  # this many heartbeats' time without a word: recreate the consumer
_RETRY = 1.0  # seconds between attempts to recreate a consumer the server would not create
_ACK_PREFIX = "$JS.ACK."
_V1_TOKENS = 9  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message of the stream as the feed hands it over."""

    subject: str
    data: bytes
    headers: dict[str, str] | None
    seq: int  # its stream sequence
    time: datetime
    pending: int  # messages of the filter after it when it was sent


Deliver = Callable[[Delivered], None]


def parse_reply(reply: str) -> tuple[int, int, int, int] | None:
    """A JetStream delivery's stream sequence, consumer sequence, time (ns) and pending count,
    from its reply subject (either token layout; None if it is not one)."""
    if not reply.startswith(_ACK_PREFIX):
        return None
    tokens = reply.split(".")
    at = 5 if len(tokens) == _V1_TOKENS else 7  # after <domain>.<account hash>: two more
    try:
        sseq, cseq, stamp, pending = tokens[at : at + 4]
        return int(sseq), int(cseq), int(stamp), int(pending)
    except ValueError:
        return None


class OrderedFeed:
    """The messages of ``filter_subject`` in ``stream`` from sequence ``after + 1`` on, each
    handed to ``deliver`` once, in order, from the read loop (it must not block or raise)."""

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str,
        filter_subject: str,
        after: int,
        deliver: Deliver,
        may_flow: Callable[[], bool] = lambda: True,
        heartbeat: float = _HEARTBEAT,
    ) -> None:
        self._nc = nc
        self._stream = stream
        self._filter = filter_subject
        self._deliver = deliver
        self._may_flow = may_flow
        self._heartbeat = heartbeat
        self.last_seq = after  # the last stream sequence handed over
        self._cseq = 0  # the last consumer sequence handed over, of the current consumer
        self._generation = itertools.count(1)
        self._current = 0  # deliveries of an older consumer are ignored
        self._subscription: Subscription | None = None
        self._consumer: str | None = None
        self._active = False  # a delivery or a heartbeat since the last watchdog look
        self._held_flow: str | None = None  # a flow-control request answered on ``resume``
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._resetting = False
        self._stopped = False
        self.resets = 0

    async def start(self) -> None:
        try:
            await self._create()
        except BaseException:
            await self._drop_consumer()
            raise
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        self._stopped = True
        self._current = 0
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self._drop_consumer()
        for task in list(self._tasks):
            task.cancel()

    def resume(self) -> None:
        """The reader caught up: answer a flow-control request held back."""
        reply, self._held_flow = self._held_flow, None
        if reply is not None:
            self._spawn(self._nc.publish(reply, b""))

    # --- the consumer ---------------------------------------------------------------------

    async def _create(self) -> None:
        generation = next(self._generation)
        inbox = self._nc.new_inbox()

        def on_message(
            subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
        ) -> None:
            if generation == self._current:
                self._on_message(subject, reply, data, headers)

        self._current = generation
        self._cseq = 0
        self._subscription = await subscribe_raw(self._nc, inbox, on_message)
        config = ConsumerConfig(
            deliver_subject=inbox,
            filter_subject=self._filter,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.last_seq + 1,
            ack_policy=AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=self._heartbeat,
            mem_storage=True,
            num_replicas=1,
        )
        info = await self._nc.jetstream().add_consumer(self._stream, config=config)
        self._consumer = info.name
        self._active = True

    async def _drop_consumer(self) -> None:
        subscription, self._subscription = self._subscription, None
        consumer, self._consumer = self._consumer, None
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        if consumer is not None:  # else the server drops it once nobody listens
            with contextlib.suppress(Exception):
                await self._nc.jetstream().delete_consumer(self._stream, consumer)

    def _reset(self, why: str) -> None:
        if self._resetting or self._stopped:
            return
        self._resetting = True
        self._current = 0  # nothing more from the consumer being replaced
        self.resets += 1
        _log.info("recreating a feed", filter=self._filter, after=self.last_seq, why=why)
        self._spawn(self._recreate())

    async def _recreate(self) -> None:
        try:
            await self._drop_consumer()
            while not self._stopped:
                try:
                    await self._create()
                    return
                except Exception as exc:
                    _log.warning("recreating a feed failed, will retry", error=repr(exc))
                    await self._drop_consumer()
                    await asyncio.sleep(_RETRY)
        finally:
            self._resetting = False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat * _MISSED_HEARTBEATS)
            if not self._active and not self._resetting:
                self._reset("no message or heartbeat")
            self._active = False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- deliveries (in the read loop) ----------------------------------------------------

    def _on_message(
        self, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self._active = True
        if headers is not None and headers.get("Status") == "100":
            self._on_control(reply.decode(), headers)
            return
        parsed = parse_reply(reply.decode())
        if parsed is None:
            return  # not a delivery of this consumer
        sseq, cseq, stamp, pending = parsed
        if cseq != self._cseq + 1:
            self._reset(f"consumer sequence {cseq} after {self._cseq}")
            return
        self._cseq = cseq
        self.last_seq = sseq
        moment = datetime.fromtimestamp(stamp / 1_000_000_000, UTC)
        self._deliver(Delivered(subject.decode(), data, headers, sseq, moment, pending))

    def _on_control(self, reply: str, headers: dict[str, str]) -> None:
        if reply:  # a flow-control request
            self._answer_flow(reply)
            return
        # An idle heartbeat: it names the last message sent, and a stalled consumer's request.
        last = headers.get("Nats-Last-Consumer")
        if last is not None and last.isdigit() and int(last) != self._cseq:
            self._reset(f"heartbeat after consumer sequence {last}, got {self._cseq}")
            return
        stalled = headers.get("Nats-Consumer-Stalled")
        if stalled:
            self._answer_flow(stalled)

    def _answer_flow(self, reply: str) -> None:
        if self._may_flow():
            self._held_flow = None
            self._spawn(self._nc.publish(reply, b""))
        else:
            self._held_flow = reply
