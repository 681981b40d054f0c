"""Subscriptions whose messages are handed to a plain function in nats-py's read loop.

nats-py delivers a callback subscription's messages through a queue to a task of its own: per
message a queue put and get, a task wake-up and a coroutine for the callback, ~3-4 µs on top of
the parse. jetwork's busiest subscriptions are reply inboxes (append and write acks, direct-get
batches, pull deliveries) whose handlers only file the message and wake whoever waits, with
nothing to await. ``subscribe_inline`` calls such a handler at once, from the read loop, in
the order the messages arrived; nats-py still owns the subscription (its sid, its
re-subscription after a reconnect, ``unsubscribe``). Installed by ``events.connection``.

A handler must not block and must not raise: what it raises goes to the connection's error
callback, as nats-py does with a callback's errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

InlineHandler = Callable[[Msg], None]
# A handler of undecoded messages: subject, reply subject, payload, headers (parsed, None when
# there are none).
RawHandler = Callable[[bytes, bytes, bytes, dict[str, str] | None], None]
# The same with the header block as it came (``NATS/1.0...\r\n\r\n``, None when there is none).
BlockHandler = Callable[[bytes, bytes, bytes, bytes | None], None]

_DELIVERY = "_jetwork_inline"  # the attribute of a nats-py Subscription: (handler, mode)
_queued_process_msg = Client._process_msg

_STATUS, _DESCRIPTION = Header.STATUS.value, Header.DESCRIPTION.value

# What a handler takes: a nats-py ``Msg``; bytes and parsed headers; bytes and the header block.
AS_MSG, AS_RAW, AS_BLOCK = 0, 1, 2
Delivery = tuple[Callable[..., None], int]  # the handler, and what it takes (``AS_*``)


def inline_delivery(nc: Client, sid: int) -> Delivery | None:
    """How subscription ``sid`` takes its messages in the read loop, or None (nats-py's queue)."""
    return getattr(nc._subs.get(sid), _DELIVERY, None)


def deliver(
    nc: Client,
    delivery: Delivery,
    sid: int,
    subject: bytes,
    reply: bytes,
    data: bytes,
    headers: dict[str, str] | bytes | None,
) -> Exception | None:
    """Hand one message to an inline handler; what it raised, for the error callback.

    ``headers``: the header block for an ``AS_BLOCK`` handler, else parsed."""
    nc.stats["in_msgs"] += 1
    nc.stats["in_bytes"] += len(data)
    handler, mode = delivery
    try:
        if mode:
            handler(subject, reply, data, headers)
        else:
            parsed = cast(dict[str, str] | None, headers)  # (a block only for AS_BLOCK)
            handler(nc._build_message(sid, subject, reply, data, parsed))
    except Exception as exc:
        return exc
    return None


async def _process_msg(
    self: Client, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
) -> None:
    delivery = inline_delivery(self, sid)
    if delivery is None:
        await _queued_process_msg(self, sid, subject, reply, data, headers)
        return
    hdr = headers if delivery[1] == AS_BLOCK else await self._process_headers(headers)
    failed = deliver(self, delivery, sid, subject, reply, data, hdr)
    if failed is not None:
        await self._error_cb(failed)


async def subscribe_inline(nc: Client, subject: str, handler: InlineHandler) -> Subscription:
    """Subscribe ``handler`` to ``subject`` (no queue group, no message limit)."""
    return await _subscribe(nc, subject, handler, handler, AS_MSG)


async def subscribe_raw(nc: Client, subject: str, handler: RawHandler) -> Subscription:
    """Like ``subscribe_inline``, without the ``Msg``: for a handler that files thousands of
    messages a second and needs only their bytes and headers (a direct-get batch, a feed)."""

    def from_msg(msg: Msg) -> None:
        handler(msg.subject.encode(), msg.reply.encode(), msg.data, msg.headers)

    return await _subscribe(nc, subject, handler, from_msg, AS_RAW)


async def subscribe_block(nc: Client, subject: str, handler: BlockHandler) -> Subscription:
    """Like ``subscribe_raw``, with the header block unparsed: for a handler that needs a few
    known headers of each message and can find them cheaper than a parse of all
    (``events.direct_get``)."""

    def from_msg(msg: Msg) -> None:
        handler(msg.subject.encode(), msg.reply.encode(), msg.data, header_block(msg.headers))

    return await _subscribe(nc, subject, handler, from_msg, AS_BLOCK)


def header_block(headers: dict[str, str] | None) -> bytes | None:
    """Parsed headers as a header block again (an inline status, ``Status`` and
    ``Description``, on the first line): for the rare message that came through nats-py's
    queue before its subscription was made inline."""
    if headers is None:
        return None
    rest = {k: v for k, v in headers.items() if k not in (_STATUS, _DESCRIPTION)}
    status = headers.get(_STATUS)
    first = f"NATS/1.0 {status} {headers.get(_DESCRIPTION, '')}".rstrip() if status else "NATS/1.0"
    lines = "".join(f"{name}: {value}\r\n" for name, value in rest.items())
    return f"{first}\r\n{lines}\r\n".encode()


async def _subscribe(
    nc: Client, subject: str, handler: Callable[..., None], queued: InlineHandler, mode: int
) -> Subscription:
    async def early(msg: Msg) -> None:
        # Only what arrives before the delivery is set below (nothing, for an inbox whose
        # requests are sent after this returns) comes this way.
        queued(msg)

    subscription = await nc.subscribe(subject, cb=early)
    setattr(subscription, _DELIVERY, (handler, mode))
    return subscription


def install() -> None:
    Client._process_msg = _process_msg  # type: ignore[method-assign]
