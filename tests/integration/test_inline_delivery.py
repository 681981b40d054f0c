"""Subscriptions handled in nats-py's read loop (``events.inline_delivery``) on a real server:
every message, in order, nothing after ``unsubscribe``, a failing handler reported without
losing the connection, and the subscription kept across a server restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events.connection import NatsSettings, connect
from events.inline_delivery import subscribe_block, subscribe_inline, subscribe_raw
from sdk.embedded_server import EmbeddedServer
from tests.eventually import assert_eventually


async def test_messages_reach_the_handler_in_order_and_stop_at_unsubscribe(nc: NATS) -> None:
    seen: list[tuple[str, bytes, str | None]] = []
    tasks: set[asyncio.Task[object] | None] = set()

    def handler(msg: Msg) -> None:
        seen.append((msg.subject, msg.data, (msg.headers or {}).get("K")))
        tasks.add(asyncio.current_task())

    subscription = await subscribe_inline(nc, "inline.t1.*", handler)
    for n in range(500):
        await nc.publish(f"inline.t1.{n % 3}", str(n).encode(), headers={"K": f"v{n}"})
    await assert_eventually(lambda: len(seen) == 500)
    assert seen == [(f"inline.t1.{n % 3}", str(n).encode(), f"v{n}") for n in range(500)]
    assert tasks == {nc._reading_task}  # run by the read loop itself, not a task of its own

    await subscription.unsubscribe()
    await nc.publish("inline.t1.0", b"late")
    await nc.flush()
    marker: list[bytes] = []
    await subscribe_inline(nc, "inline.t1.end", lambda msg: marker.append(msg.data))
    await nc.publish("inline.t1.end", b"end")
    await assert_eventually(lambda: marker == [b"end"])
    assert len(seen) == 500  # nothing after unsubscribe (the late one went before the marker)


async def test_raw_handlers_get_the_bytes_and_parsed_headers(nc: NATS) -> None:
    seen: list[tuple[bytes, bytes, bytes, dict[str, str] | None]] = []
    await subscribe_raw(nc, "inline.t2.*", lambda s, r, d, h: seen.append((s, r, d, h)))
    await nc.publish("inline.t2.a", b"one", headers={"Nats-Sequence": "7", "X": "y"})
    await nc.publish("inline.t2.b", b"two", reply="answer.here")
    await assert_eventually(lambda: len(seen) == 2)
    assert seen == [
        (b"inline.t2.a", b"", b"one", {"Nats-Sequence": "7", "X": "y"}),
        (b"inline.t2.b", b"answer.here", b"two", None),
    ]


async def test_block_handlers_get_the_header_block_as_it_came(nc: NATS) -> None:
    seen: list[tuple[bytes, bytes, bytes, bytes | None]] = []
    await subscribe_block(nc, "inline.t4.*", lambda s, r, d, h: seen.append((s, r, d, h)))
    await nc.publish("inline.t4.a", b"one", headers={"Nats-Sequence": "7", "X": "y"})
    await nc.publish("inline.t4.b", b"two", reply="answer.here")
    await assert_eventually(lambda: len(seen) == 2)
    assert seen == [
        (b"inline.t4.a", b"", b"one", b"NATS/1.0\r\nNats-Sequence: 7\r\nX: y\r\n\r\n"),
        (b"inline.t4.b", b"answer.here", b"two", None),
    ]


async def test_a_failing_handler_is_reported_and_the_connection_goes_on(nats_url: str) -> None:
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = NATS()  # (a plain nats-py client: the delivery is installed by importing events)
    await nc.connect(nats_url, error_cb=on_error)
    try:
        seen: list[bytes] = []

        def handler(msg: Msg) -> None:
            if msg.data == b"bad":
                raise ValueError("handler failed")
            seen.append(msg.data)

        await subscribe_inline(nc, "inline.t3", handler)
        for data in (b"1", b"bad", b"2"):
            await nc.publish("inline.t3", data)
        await assert_eventually(lambda: seen == [b"1", b"2"])
        assert [str(e) for e in errors] == ["handler failed"] and nc.is_connected
    finally:
        await nc.close()


async def test_the_subscription_survives_a_server_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="2m").start()
    nc = await connect(NatsSettings(url=server.url, name="inline-restart"))
    try:
        seen: list[bytes] = []
        await subscribe_inline(nc, "inline.t4", lambda msg: seen.append(msg.data))
        await nc.publish("inline.t4", b"before")
        await assert_eventually(lambda: seen == [b"before"])
        server.stop()
        server = EmbeddedServer(
            data_dir=server.data_dir, port=server.port, sync_interval="2m"
        ).start()
        await assert_eventually(lambda: nc.is_connected, timeout=20)

        async def delivered_after_restart() -> bool:
            await nc.publish("inline.t4", b"after")
            return b"after" in seen

        await assert_eventually(delivered_after_restart, timeout=20, interval=0.2)
    finally:
        await nc.close()
        server.stop()
