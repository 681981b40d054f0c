"""The events of the partitions one projector owns, in order, without acks.

One ordered feed per partition (``evt.<p>.>``, from its position on:
``events.ordered_feed``): an ephemeral push consumer whose deliveries are filed in the read
loop, recreated from the last sequence handed over whenever a gap or a stall shows, so a
partition's events arrive exactly once each and in log order, with nothing for the server to
track but a delivery pointer. Every feed appends to one shared inbox and wakes the projector's
loop; while the inbox holds more than ``HIGH_WATER`` events, flow control holds the servers'
deliveries back until the projector has taken them.
"""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NATS

from events import subjects
from events.ordered_feed import Delivered, OrderedFeed

HIGH_WATER = 20_000  # events in the inbox past which the feeds wait for the projector


class Feeds:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._feeds: dict[int, OrderedFeed] = {}
        self.inbox: list[tuple[int, Delivered]] = []
        self.wakeup = asyncio.Event()
        # Per partition: whether the last event given had nothing after it (num_pending 0).
        self.caught_up: dict[int, bool] = {}

    @property
    def partitions(self) -> list[int]:
        return sorted(self._feeds)

    async def open(self, partition: int, *, after: int) -> None:
        """Deliver the partition's events from sequence ``after + 1`` on."""
        await self.shut(partition)

        def deliver(event: Delivered) -> None:
            self.inbox.append((partition, event))
            self.caught_up[partition] = event.pending == 0
            self.wakeup.set()

        self.caught_up[partition] = False
        feed = OrderedFeed(
            self._nc,
            stream=subjects.EVENTS_STREAM,
            filter_subject=f"evt.{partition}.>",
            after=after,
            deliver=deliver,
            may_flow=self._may_flow,
        )
        await feed.start()
        self._feeds[partition] = feed

    def _may_flow(self) -> bool:
        return len(self.inbox) < HIGH_WATER

    async def shut(self, partition: int) -> None:
        feed = self._feeds.pop(partition, None)
        self.caught_up.pop(partition, None)
        if feed is not None:  # (opening one must not go through everything delivered)
            self.inbox = [(p, event) for p, event in self.inbox if p != partition]
            await feed.stop()

    async def close(self) -> None:
        for partition in list(self._feeds):
            await self.shut(partition)

    def take(self, limit: int) -> list[tuple[int, Delivered]]:
        taken, self.inbox = self.inbox[:limit], self.inbox[limit:]
        if not self.inbox:
            self.wakeup.clear()
        if self._may_flow():
            for feed in self._feeds.values():
                feed.resume()
        return taken
