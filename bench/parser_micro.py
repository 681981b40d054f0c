"""The protocol parser alone: nats-py's and jetwork's (``events.wire_parser``) on the same bytes.

``python -m bench.parser_micro``: 2,000 messages shaped like a direct-get batch of stored events
(nine headers, a ~350-byte payload) for an inline raw subscription, fed in 64 KiB reads; per
message: parse, headers, delivery to a handler that keeps nothing. Best of 15 runs of each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.protocol.parser import Parser

import events.connection  # noqa: F401 - installs jetwork's speedups, the parser among them
from events import wire_parser
from events.inline_delivery import _DELIVERY, AS_RAW
from events.nats_speedups import encode_headers

MESSAGES = 2_000
READ = 65_536
SID = 7


def stream(count: int = MESSAGES) -> bytes:
    parts = []
    for seq in range(1, count + 1):
        headers = encode_headers(
            {
                "Nats-Expected-Last-Subject-Sequence": str(seq - 1),
                "Nats-Expected-Last-Subject-Sequence-Subject": "evt.13.wf-1.job.b10.>",
                "Nats-Msg-Id": f"540125e57086.1.0.{seq}:0",
                "Nats-Stream": "JW_EVENTS",
                "Nats-Subject": "evt.13.wf-1.job.b10.JobQueued.@noop",
                "Nats-Sequence": str(seq),
                "Nats-Time-Stamp": "2026-12-07T13:33:34.209717913Z",
                "Nats-Num-Pending": str(count - seq),
                "Nats-Last-Sequence": str(seq - 1),
            }
        )
        payload = b'{"v":1,"type":"JobQueued","spec":{"uses":"noop"}}'.ljust(350)
        size = len(headers) + len(payload)
        parts.append(b"HMSG _INBOX.x.1 %d %d %d\r\n" % (SID, len(headers), size))
        parts += [headers, payload, b"\r\n"]
    return b"".join(parts)


async def per_message(parse: Callable[..., Awaitable[None]], wire: bytes) -> float:
    client = Client()
    subscription: Any = type("Subscription", (), {})()
    setattr(subscription, _DELIVERY, (lambda *_: None, AS_RAW))
    client._subs[SID] = subscription
    parser = Parser(client)
    reads = [wire[at : at + READ] for at in range(0, len(wire), READ)]
    best = float("inf")
    for _ in range(15):
        began = time.perf_counter()
        for chunk in reads:
            await parse(parser, chunk)
        best = min(best, time.perf_counter() - began)
    return best / MESSAGES * 1e6


async def main() -> None:
    wire = stream()
    nats_py = await per_message(wire_parser._original_parse, wire)
    jetwork = await per_message(wire_parser.parse, wire)
    print(f"nats-py's parser: {nats_py:.2f} µs per message")
    print(f"jetwork's parser: {jetwork:.2f} µs per message")


if __name__ == "__main__":
    asyncio.run(main())
