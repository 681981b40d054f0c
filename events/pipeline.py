"""Conditional appends sent without waiting for each answer: the engine's hot path.

``EventStore.append`` is one request per append, awaited: safe and simple, one round trip each.
An engine owning a partition decides many workflows per batch; ``Pipeline`` sends all their
appends at once and collects the answers (``events.replies``), so a batch costs one round trip,
not one per append. Only the happy path is pipelined: a single event with its CAS headers and msg
id. Anything else goes to ``EventStore.append`` with the *same* msg ids, which owns the
protocol's hard cases (several events of one actor as an atomic batch, a lost answer, a
duplicate, an unsettled cluster write): an append that timed out here is sent again there and
recognised, never doubled.

**Guarded writes.** Each append carries a ``guard`` (the engine: it still owns the workflow's
partition). The guards are checked and the bytes handed to the socket in one synchronous step,
so a process frozen between the engine's check and nats-py's flusher can no longer wake up and
send a stage its lease stopped covering (``docs/reliability.md``, Known limits).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events.base import Event
from events.errors import ConcurrencyConflict, StoreError
from events.nats_speedups import write_now
from events.replies import Replies
from events.store import EXPECTED_FILTER_HEADER, EXPECTED_SEQ_HEADER, ActorRef, EventStore

_WRONG_LAST_SEQ: Final = 10071
_HEADERS: Final = (
    "NATS/1.0\r\n"
    f"{EXPECTED_SEQ_HEADER}: {{seq}}\r\n"
    f"{EXPECTED_FILTER_HEADER}: {{filter}}\r\n"
    "Nats-Msg-Id: {msg_id}\r\n\r\n"
)


def _always() -> bool:
    return True


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
    guard: Callable[[], bool] = _always
    """Checked in the very step the bytes leave: False fences the append (``Fenced``)."""


class Fenced(Exception):
    """An append not sent: its ``guard`` no longer held when it was about to go (the engine
    no longer owns the workflow's partition)."""


class Pipeline:
    def __init__(self, nc: NATS, store: EventStore, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._store = store
        self._timeout = timeout
        self._replies = Replies(nc)
        self._in_flight: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        """Nothing to prepare: the reply inbox opens with the first append."""

    async def close(self) -> None:
        await self._replies.close()

    async def send(self, appends: list[Pending]) -> None:
        """Send every append and wait until each one's future is resolved.

        Never raises for one append: its future carries its sequence or its error
        (``ConcurrencyConflict``, ``StoreError`` …).
        """
        done = asyncio.get_running_loop().create_future()
        self._in_flight.add(done)
        try:
            await self._send(appends)
        finally:
            self._in_flight.discard(done)
            done.set_result(None)

    async def settled(self, timeout: float) -> None:
        """Wait (at most ``timeout``) until every send already in flight has its answers.

        A partition given up is deleted from KV only after this: an append sent for it before
        the engine stopped deciding for it must land while the lease still names the engine,
        not after another engine may have taken the partition."""
        waiting = list(self._in_flight)
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)

    async def _send(self, appends: list[Pending]) -> None:
        await self._replies.ready()
        prepared: list[tuple[Pending, bytes, asyncio.Future[Msg]]] = []
        slow: list[Pending] = []
        for pending in appends:
            if len(pending.events) != 1:
                slow.append(pending)
                continue
            try:
                prepared.append((pending, *self._prepare(pending)))
            except Exception:  # too large for one message, a closed connection: the slow path
                slow.append(pending)
        sent = self._write_guarded(prepared)
        for pending, answer in sent:
            try:
                reply = await answer
            except Exception:
                # No answer: the write may have landed. The store sends it again with the same
                # msg id and recognises it if it did.
                slow.append(pending)
                continue
            if not self._settle(pending, reply):
                slow.append(pending)  # an answer the store must settle (a duplicate, a 503 …)
        if slow:
            await asyncio.gather(*(self._slow(pending) for pending in slow))

    def _prepare(self, pending: Pending) -> tuple[bytes, asyncio.Future[Msg]]:
        subject, payload = self._store.prepare(pending.actor, pending.events[0])
        headers = _HEADERS.format(
            seq=pending.expected_seq, filter=pending.actor.filter, msg_id=f"{pending.command_id}:0"
        ).encode()
        return self._replies.prepare(subject, payload, headers=headers, timeout=self._timeout)

    def _write_guarded(
        self, prepared: list[tuple[Pending, bytes, asyncio.Future[Msg]]]
    ) -> list[tuple[Pending, asyncio.Future[Msg]]]:
        """Check each append's guard and write the ones that hold, in one synchronous step:
        nothing can run, and no freeze of the process can fall, between the check and the
        bytes leaving (``nats_speedups.write_now``). Not connected: each fails retryably."""
        live = []
        for pending, command, answer in prepared:
            if pending.guard():
                live.append((pending, command, answer))
            else:
                answer.cancel()
                pending.future.set_exception(Fenced(f"{pending.actor.filter}: guard failed"))
        size = sum(len(command) for _, command, _ in live)
        if live and not write_now(self._nc, [command for _, command, _ in live], size):
            for pending, _, answer in live:
                answer.cancel()
                pending.future.set_exception(StoreError("not connected to NATS", retryable=True))
            return []
        return [(pending, answer) for pending, _, answer in live]

    def _settle(self, pending: Pending, msg: Msg) -> bool:
        """Resolve ``pending`` from its answer; False when the store must settle it."""
        try:
            reply = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(reply, dict):
            return False
        error, seq = reply.get("error"), reply.get("seq")
        if error is None and isinstance(seq, int) and not reply.get("duplicate"):
            pending.future.set_result(seq)
            return True
        if isinstance(error, dict) and error.get("err_code") == _WRONG_LAST_SEQ:
            # This append was sent once only: a conflict is another writer's, never our own.
            description = str(error.get("description", ""))
            pending.future.set_exception(
                ConcurrencyConflict(
                    actor=pending.actor.filter,
                    expected_seq=pending.expected_seq,
                    actual_seq=_actual_seq(description),
                )
            )
            return True
        return False

    async def _slow(self, pending: Pending) -> None:
        if not pending.guard():
            pending.future.set_exception(Fenced(f"{pending.actor.filter}: guard failed"))
            return
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


def _actual_seq(description: str) -> int | None:
    tail = description.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else None
