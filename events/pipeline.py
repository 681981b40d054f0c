"""Conditional appends sent without waiting for each answer: the engine's hot path.

``EventStore.append`` is one request per append, awaited: safe and simple, one round trip each.
An engine owning a partition decides many workflows per batch; ``Pipeline`` sends all their
appends at once and collects the answers on one long-lived inbox subscription, so a batch costs
one round trip, not one per append. Only the happy path is pipelined: a single event with its
CAS headers and msg id. Anything else goes to ``EventStore.append`` with the *same* msg ids, which
owns the protocol's hard cases (several events of one actor as an atomic batch, a lost answer, a
duplicate, an unsettled cluster write): an append that timed out here is sent again there and
recognised, never doubled.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Final

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.base import Event
from events.errors import ConcurrencyConflict
from events.nats_speedups import publish_with_headers
from events.store import EXPECTED_FILTER_HEADER, EXPECTED_SEQ_HEADER, ActorRef, EventStore

_WRONG_LAST_SEQ: Final = 10071
_HEADERS: Final = (
    "NATS/1.0\r\n"
    f"{EXPECTED_SEQ_HEADER}: {{seq}}\r\n"
    f"{EXPECTED_FILTER_HEADER}: {{filter}}\r\n"
    "Nats-Msg-Id: {msg_id}\r\n\r\n"
)


def _new_future() -> asyncio.Future[int]:
    return asyncio.get_running_loop().create_future()


@dataclass(slots=True)
class Pending:
    """One append in flight: resolved with the sequence of its last event, or an error."""

    actor: ActorRef
    events: tuple[Event, ...]
    expected_seq: int
    command_id: str
    future: asyncio.Future[int] = field(default_factory=_new_future)
    token: str = ""


class Pipeline:
    def __init__(self, nc: NATS, store: EventStore, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._store = store
        self._timeout = timeout
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._tokens = itertools.count()
        self._waiting: dict[str, Pending] = {}
        self._settling: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._subscription = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_reply)

    async def close(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.unsubscribe()
        for pending in self._waiting.values():
            if not pending.future.done():
                pending.future.cancel()
        self._waiting.clear()

    async def send(self, appends: list[Pending]) -> None:
        """Send every append and wait until each one's future is resolved.

        Never raises for one append: its future carries its sequence or its error
        (``ConcurrencyConflict``, ``StoreError`` …).
        """
        slow: list[Pending] = []
        for pending in appends:
            if len(pending.events) != 1 or not self._inbox:
                slow.append(pending)
                continue
            try:
                await self._publish(pending)
            except Exception:  # not sendable now (connection down, too large): the slow path
                self._waiting.pop(pending.token, None)
                slow.append(pending)
        sent = [pending.future for pending in appends if pending.token in self._waiting]
        if sent:
            await asyncio.wait(sent, timeout=self._timeout)
        for pending in appends:
            if not pending.future.done() and self._waiting.pop(pending.token, None) is pending:
                # No answer: the write may have landed. The store sends it again with the same
                # msg id and recognises it if it did.
                slow.append(pending)
        if slow:
            await asyncio.gather(*(self._slow(pending) for pending in slow))
        unsettled = [pending.future for pending in appends if not pending.future.done()]
        if unsettled:  # answered with something for the store to settle: it is on it
            await asyncio.wait(unsettled)

    async def _publish(self, pending: Pending) -> None:
        subject, payload = self._store.prepare(pending.actor, pending.events[0])
        pending.token = str(next(self._tokens))
        self._waiting[pending.token] = pending
        headers = _HEADERS.format(
            seq=pending.expected_seq, filter=pending.actor.filter, msg_id=f"{pending.command_id}:0"
        ).encode()
        reply = f"{self._inbox}.{pending.token}"
        await publish_with_headers(self._nc, subject, reply, headers, payload)

    async def _slow(self, pending: Pending) -> None:
        try:
            seq = await self._store.append(
                pending.actor,
                pending.events,
                expected_seq=pending.expected_seq,
                command_id=pending.command_id,
            )
        except Exception as exc:
            pending.future.set_exception(exc)
        else:
            pending.future.set_result(seq)

    async def _on_reply(self, msg: Msg) -> None:
        pending = self._waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if pending is None or pending.future.done():
            return
        try:
            reply = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            reply = {}
        error = reply.get("error") if isinstance(reply, dict) else None
        seq = reply.get("seq") if isinstance(reply, dict) else None
        if error is None and isinstance(seq, int) and not reply.get("duplicate"):
            pending.future.set_result(seq)
            return
        if isinstance(error, dict) and error.get("err_code") == _WRONG_LAST_SEQ:
            # This append was sent once only: a conflict is another writer's, never our own.
            pending.future.set_exception(
                ConcurrencyConflict(
                    actor=pending.actor.filter,
                    expected_seq=pending.expected_seq,
                    actual_seq=_actual_seq(str(error.get("description", ""))),
                )
            )
            return
        # Anything else (a duplicate to check, no stream leader, ...) is the store's to settle.
        task = asyncio.get_running_loop().create_task(self._slow(pending))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)


def _actual_seq(description: str) -> int | None:
    tail = description.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else None
