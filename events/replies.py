"""Requests over one long-lived reply inbox: publish with a token, get the answer on a future.

nats-py's ``request`` costs, per call, a random inbox token, a header encoding pass, and an
``asyncio.wait_for`` (a task and a timer); the appends of engines and workers are requests on the
hot path. ``Replies`` keeps one wildcard subscription, numbers its requests, encodes headers in
one step and fails a future not answered in time (``events.deadlines``: one timer for all).
Callers may send many requests before awaiting any (pipelining): answers are matched by token,
in any order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError

from events.deadlines import Deadlines
from events.inline_delivery import subscribe_inline
from events.nats_speedups import check_payload, hpub_command, publish_with_headers

_NO_RESPONDERS = "503"


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """NATS headers as they go on the wire (names and values must not hold CR or LF)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    if "\n" in lines.replace("\r\n", "") or "\r" in lines.replace("\r\n", ""):
        raise ValueError(f"a header holds a line break: {dict(headers)!r}")
    return f"NATS/1.0\r\n{lines}\r\n".encode()


class Replies:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._tokens = itertools.count()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._deadlines = Deadlines(self._waiting)
        self._opening = asyncio.Lock()

    async def send(
        self, subject: str, payload: bytes, *, headers: bytes | None, timeout: float
    ) -> asyncio.Future[Msg]:
        """Publish; the future resolves with the reply, or fails with ``TimeoutError`` (or
        ``NoRespondersError`` when nothing listens on ``subject``)."""
        await self.ready()
        token, answer = self._expect(timeout)
        reply = f"{self._prefix}.{token}"
        try:
            if headers is None:
                await self._nc.publish(subject, payload, reply=reply)
            else:
                await publish_with_headers(self._nc, subject, reply, headers, payload)
        except BaseException:
            answer.cancel()
            raise
        return answer

    async def ready(self) -> None:
        """Open the reply inbox (``prepare`` needs it open)."""
        if not self._prefix:
            await self._open()

    def prepare(
        self, subject: str, payload: bytes, *, headers: bytes, timeout: float
    ) -> tuple[bytes, asyncio.Future[Msg]]:
        """The protocol bytes of a request, and the future of its answer, without sending it
        (``write_now`` does, or ``forget`` when it is not sent). After ``ready``."""
        check_payload(self._nc, payload)
        token, answer = self._expect(timeout)
        return hpub_command(subject, f"{self._prefix}.{token}", headers, payload), answer

    def _expect(self, timeout: float) -> tuple[str, asyncio.Future[Msg]]:
        token = str(next(self._tokens))
        answer: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[token] = answer
        self._deadlines.watch(token, answer, timeout)
        return token, answer

    async def request(
        self, subject: str, payload: bytes, *, headers: bytes | None, timeout: float
    ) -> Msg:
        return await (await self.send(subject, payload, headers=headers, timeout=timeout))

    async def close(self) -> None:
        async with self._opening:
            subscription, self._subscription, self._prefix = self._subscription, None, ""
        if subscription is not None:
            with contextlib.suppress(Exception):  # a closed connection has none left anyway
                await subscription.unsubscribe()
        self._deadlines.cancel()
        for answer in list(self._waiting.values()):
            answer.cancel()
        self._waiting.clear()

    async def _open(self) -> None:
        async with self._opening:
            if not self._prefix:
                prefix = self._nc.new_inbox()
                self._subscription = await subscribe_inline(self._nc, f"{prefix}.*", self._on_reply)
                self._prefix = prefix

    def _on_reply(self, msg: Msg) -> None:
        answer = self._waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if answer is None or answer.done():
            return
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS and not msg.data:
            answer.set_exception(NoRespondersError())
        else:
            answer.set_result(msg)
