"""``events.pull.PullFeed`` on a real server: a pull request that expires is renewed at once."""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from events.pull import PullFeed
from tests.eventually import assert_eventually


async def test_an_expired_pull_request_is_renewed_without_the_reader(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="PULLFEED", subjects=["pullfeed.>"]))
    await js.add_consumer(
        "PULLFEED", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT)
    )
    requests: list[bytes] = []

    async def seen(msg: Msg) -> None:
        requests.append(msg.data)

    watching = await nc.subscribe("$JS.API.CONSUMER.MSG.NEXT.PULLFEED.c", cb=seen)
    feed = PullFeed(nc, stream="PULLFEED", consumer="c", window=8, expires=0.3)
    await feed.start()
    try:
        await feed.top_up()  # the reader asks once, then does not ask again (an idle engine)
        # The request expires after 0.3 s; the feed asks again by itself (before: only at the
        # reader's next top-up, up to a poll interval later, with nothing requested meanwhile).
        await assert_eventually(lambda: len(requests) >= 2, timeout=5)
        await js.publish("pullfeed.x", b"arrived after the expiry")
        await assert_eventually(
            lambda: [m.data for m in feed.take(8)] == [b"arrived after the expiry"]
        )
    finally:
        await feed.stop()
        await watching.unsubscribe()
        await js.delete_stream("PULLFEED")
