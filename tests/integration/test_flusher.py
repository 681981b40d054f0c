"""nats-py's flusher waiting one turn of the loop (``events.flusher``) on a real server: a
message published in the turn after the flusher was woken goes out in the same write, and
every message arrives, in order."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from tests.eventually import assert_eventually


async def test_a_publish_in_the_next_turn_joins_the_write(nc: NATS) -> None:
    seen: list[bytes] = []

    async def note(msg: Msg) -> None:
        seen.append(msg.data)

    await nc.subscribe("flush.t1", cb=note)
    await nc.flush()
    transport = nc._transport
    assert transport is not None
    writes: list[int] = []
    real = transport.writelines

    def counted(payload: list[bytes]) -> None:
        writes.append(len(payload))
        real(payload)

    transport.writelines = counted  # type: ignore[method-assign]
    try:
        await nc.publish("flush.t1", b"first")  # wakes the flusher for the next turn
        await asyncio.sleep(0)  # that turn: nats-py's own flusher would write "first" alone
        await nc.publish("flush.t1", b"second")
        await assert_eventually(lambda: seen == [b"first", b"second"])
        assert writes[0] == 2, writes  # both in the first write
    finally:
        transport.writelines = real  # type: ignore[method-assign]
