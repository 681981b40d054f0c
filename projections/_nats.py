"""JetStream plumbing for the projections: direct gets and pipelined publishes on one inbox each.

Everything here is one request (and, for reads, a batch of replies) on a long-lived wildcard
inbox: no consumer is ever created to read, and writes are pipelined (``send`` returns once the
message is buffered, the ack arrives on a future). nats-py exceptions stop at this module: callers
see ``StoreError``. Reads are the event store's own direct-get reader (``Direct`` is
``events.direct_get.DirectReader`` on a named stream): one implementation of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from events.deadlines import Deadlines
from events.direct_get import DirectReader, StoredMessage
from events.errors import StoreError
from events.inline_delivery import subscribe_inline
from events.nats_speedups import check_publish, encode_headers, publish_with_headers

# The one direct-get reader (``events.direct_get``) serves the projections too.
Stored = StoredMessage


class Direct(DirectReader):
    """Direct gets on one stream (needs ``allow_direct``): ``events.direct_get.DirectReader``."""

    def __init__(self, nc: NATS, stream: str, *, timeout: float = 5.0) -> None:
        super().__init__(nc, stream=stream, timeout=timeout)
        self.stream = stream


class Publisher:
    """Requests whose answers are JSON (JetStream publishes and API calls), pipelined on one
    wildcard reply subscription."""

    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self.timeout = timeout
        self._prefix: str | None = None  # of the one wildcard reply subscription, once open
        self._subscription: Subscription | None = None
        self._lock = asyncio.Lock()
        self._tokens = itertools.count()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._deadlines = Deadlines(self._answers)

    async def reply_subject(self) -> tuple[str, str]:
        if self._prefix is None:
            async with self._lock:
                if self._prefix is None:
                    prefix = self._nc.new_inbox()
                    self._subscription = await subscribe_inline(
                        self._nc, f"{prefix}.*", self._on_reply
                    )
                    self._prefix = prefix
        token = str(next(self._tokens))
        return token, f"{self._prefix}.{token}"

    async def close(self) -> None:
        """Drop the reply subscription (a later request subscribes again)."""
        async with self._lock:
            subscription, self._subscription, self._prefix = self._subscription, None, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # a closed connection has none left anyway
                await subscription.unsubscribe()

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Publish; returns once the message is buffered, with a future of the JSON answer
        (which fails with ``TimeoutError`` when none came within ``timeout``).

        Messages sent one after the other from one task reach the server in that order.
        """
        token, reply = await self.reply_subject()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[token] = answer
        self._deadlines.watch(token, answer, self.timeout)  # one timer for all (5% of CPU)
        try:
            if headers:
                encoded = encode_headers(headers)
                check_publish(self._nc, subject, reply, payload)
                await publish_with_headers(self._nc, subject, reply, encoded, payload)
            else:
                await self._nc.publish(subject, payload, reply=reply)
        except Exception as exc:
            answer.cancel()
            raise _store_error(f"publishing to {subject}", exc) from None
        return answer

    async def wait(self, answer: asyncio.Future[dict[str, Any]], what: str) -> dict[str, Any]:
        try:
            return await answer
        except TimeoutError:
            raise StoreError(f"{what}: no answer", retryable=True) from None

    async def call(self, subject: str, request: dict[str, Any], what: str) -> dict[str, Any]:
        return await self.wait(await self.send(subject, orjson.dumps(request)), what)

    def _on_reply(self, msg: Msg) -> None:
        answer = self._answers.pop(msg.subject.rsplit(".", 1)[-1], None)
        if answer is None or answer.done():
            return
        status = msg.headers.get("Status") if msg.headers else None
        if status == "503":
            answer.set_result({"error": {"code": 503, "description": "no responders"}})
            return
        try:
            answer.set_result(orjson.loads(msg.data))
        except orjson.JSONDecodeError:
            answer.set_result({"error": {"code": 0, "description": "answer is not JSON"}})


def error_code(answer: dict[str, Any]) -> int:
    error = answer.get("error")
    return int(error.get("err_code", 0) or error.get("code", 0)) if error else 0


def describe(answer: dict[str, Any]) -> str:
    error = answer.get("error") or {}
    return f"{error.get('description', 'unknown error')} ({error_code(answer)})"


def _store_error(what: str, exc: Exception) -> StoreError:
    return StoreError(f"{what} failed: {exc or type(exc).__name__}", retryable=True)


async def pull_now(
    nc: NATS, *, stream: str, consumer: str, batch: int, timeout: float
) -> list[Msg]:
    """The messages a durable pull consumer can deliver right now (``no_wait``), at most ``batch``.

    Unlike a waiting pull, nothing stays requested afterwards: a message published later is not
    delivered to a reader that has gone (it would sit unacknowledged until its ack wait ends).
    A request the server leaves open (``max_ack_pending`` reached part-way) returns what came
    within ``timeout``; only one that brought nothing is an error.
    """
    inbox = nc.new_inbox()
    received: list[Msg] = []
    ended = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            received.append(msg)
            if len(received) < batch:
                return
        if not ended.done():
            ended.set_result(None)

    sub = await nc.subscribe(inbox, cb=on_message)
    try:
        request = {"batch": batch, "no_wait": True}
        await nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", orjson.dumps(request), reply=inbox
        )
        await asyncio.wait_for(ended, timeout)
    except TimeoutError:
        if not received:
            raise StoreError(
                f"pulling from {stream}/{consumer} timed out", retryable=True
            ) from None
    finally:
        await sub.unsubscribe()
    return received
