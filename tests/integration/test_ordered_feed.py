"""The ordered feed (``events.ordered_feed``) on a real server: every message of its filter from
its start on, once and in order, through a gap (a delivery lost on the way), a server restart
(the consumer gone with it) and a flow-control request held back while the reader is behind."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from events.connection import NatsSettings, connect
from events.ordered_feed import Delivered, OrderedFeed, parse_reply
from sdk.embedded_server import EmbeddedServer
from tests.eventually import assert_eventually

STREAM = "FEEDTEST"


async def _stream(nc: NATS) -> None:
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream(STREAM)
    await js.add_stream(StreamConfig(name=STREAM, subjects=["feed.>"]))


async def _publish(nc: NATS, numbers: range, subject: str = "feed.a") -> None:
    js = nc.jetstream()
    for n in numbers:
        await js.publish(subject, str(n).encode(), headers={"N": str(n)})


async def _published(nc: NATS, n: int) -> bool:
    try:
        await nc.jetstream().publish("feed.a", str(n).encode(), headers={"Nats-Msg-Id": str(n)})
    except Exception:
        return False
    return True


def _numbers(seen: list[Delivered]) -> list[int]:
    return [int(d.data) for d in seen]


async def test_every_message_once_in_order_from_the_start_sequence(nc: NATS) -> None:
    await _stream(nc)
    await _publish(nc, range(0, 10))
    await _publish(nc, range(100, 105), subject="feed.other")  # not in the filter
    await _publish(nc, range(10, 20))
    seen: list[Delivered] = []
    before = time.time()
    feed = OrderedFeed(
        nc, stream=STREAM, filter_subject="feed.a", after=3, deliver=seen.append
    )  # from sequence 4 on
    await feed.start()
    try:
        await assert_eventually(lambda: len(seen) == 17)
        assert _numbers(seen) == list(range(3, 20))
        assert [d.seq for d in seen] == list(range(4, 11)) + list(range(16, 26))
        assert seen[0].pending == 16 and seen[-1].pending == 0
        assert seen[0].headers is not None and seen[0].headers["N"] == "3"
        assert seen[0].subject == "feed.a" and abs(seen[0].time.timestamp() - before) < 60
        await _publish(nc, range(20, 30))
        await assert_eventually(lambda: len(seen) == 27)
        assert _numbers(seen) == list(range(3, 30)) and feed.resets == 0
    finally:
        await feed.stop()


async def test_a_gap_recreates_the_consumer_without_losing_or_repeating(nc: NATS) -> None:
    await _stream(nc)
    await _publish(nc, range(0, 50))
    seen: list[Delivered] = []
    feed = OrderedFeed(nc, stream=STREAM, filter_subject="feed.>", after=0, deliver=seen.append)
    await feed.start()
    try:
        await assert_eventually(lambda: len(seen) == 50)
        # A delivery that skips consumer sequences, as if one was lost on the way (its reply
        # subject, in the server's layout, says so), as it reaches the handler from the read
        # loop (a client may not publish with a $JS.ACK reply): it is not handed over.
        lost = f"$JS.ACK.{STREAM}.c.1.60.{50 + 3}.{time.time_ns()}.0"
        feed._on_message(b"feed.a", lost.encode(), b"999", None)
        await assert_eventually(lambda: feed.resets == 1)
        await _publish(nc, range(50, 80))
        await assert_eventually(lambda: len(seen) == 80)
        assert _numbers(seen) == list(range(80))
        assert [d.seq for d in seen] == list(range(1, 81))
    finally:
        await feed.stop()


async def test_the_feed_goes_on_after_a_server_restart(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="always").start()
    nc = await connect(NatsSettings(url=server.url, name="feed-restart"))
    seen: list[Delivered] = []
    feed = OrderedFeed(
        nc, stream=STREAM, filter_subject="feed.>", after=0, deliver=seen.append, heartbeat=0.2
    )
    try:
        await _stream(nc)
        await _publish(nc, range(0, 20))
        await feed.start()
        await assert_eventually(lambda: len(seen) == 20)
        server.stop()
        server = EmbeddedServer(
            data_dir=server.data_dir, port=server.port, sync_interval="always"
        ).start()
        await assert_eventually(lambda: nc.is_connected, timeout=20)
        for n in range(20, 40):  # once JetStream is back (a msg id: a retry is not a second)
            await assert_eventually(lambda n=n: _published(nc, n), timeout=20, interval=0.1)
        # The consumer was in the server's memory: the missed heartbeats recreate it from the
        # last sequence handed over.
        await assert_eventually(lambda: len(seen) == 40, timeout=20)
        assert _numbers(seen) == list(range(40)) and feed.resets >= 1
    finally:
        await feed.stop()
        await nc.close()
        server.stop()


async def test_flow_control_waits_for_the_reader_to_catch_up(nc: NATS) -> None:
    await _stream(nc)
    behind = True
    feed = OrderedFeed(
        nc, stream=STREAM, filter_subject="feed.>", after=0, deliver=lambda d: None,
        may_flow=lambda: not behind,
    )  # fmt: skip
    answers: list[str] = []

    async def note(msg: Msg) -> None:
        answers.append(msg.subject)

    await nc.subscribe("fc.reply", cb=note)
    await feed.start()
    try:
        # The server's flow-control request (a status 100 message with a reply subject), as it
        # reaches the handler from the read loop.
        feed._on_message(b"_INBOX.x", b"fc.reply", b"", {"Status": "100"})
        await nc.flush()
        assert answers == []  # held while the reader is behind
        behind = False
        feed.resume()
        await assert_eventually(lambda: answers == ["fc.reply"])
        feed.resume()  # nothing held any more: no second answer
        feed._on_message(b"_INBOX.x", b"fc.reply", b"", {"Status": "100"})
        await assert_eventually(lambda: answers == ["fc.reply", "fc.reply"])
    finally:
        await feed.stop()


def test_reply_subjects_of_both_layouts() -> None:
    assert parse_reply("$JS.ACK.S.c.1.42.7.1700000000000000000.3") == (
        42, 7, 1700000000000000000, 3,
    )  # fmt: skip
    assert parse_reply("$JS.ACK.dom.ACCHASH.S.c.1.42.7.1700000000000000000.3.rand") == (
        42, 7, 1700000000000000000, 3,
    )  # fmt: skip
    assert parse_reply("_INBOX.abc") is None
    assert parse_reply("$JS.ACK.S.c.1.x.7.1.3") is None


async def test_a_feed_that_cannot_start_leaves_no_subscription(nc: NATS) -> None:
    await nc.jetstream().account_info()  # nats-py's own reply inbox for requests, made once
    before = len(nc._subs)
    feed = OrderedFeed(nc, stream="NO_SUCH_STREAM", filter_subject="x.>", after=0, deliver=print)
    with pytest.raises(NotFoundError):
        await feed.start()
    assert len(nc._subs) == before
