"""The events of the partitions one projector owns, in order, without acks.

One ordered consumer per partition (``evt.<p>.>``, from its position on): push, flow
controlled, recreated by nats-py from the last sequence it delivered whenever a gap or a stall
shows, so a partition's events arrive exactly once each and in log order, with nothing for the
server to track but a delivery pointer. Every feed appends to one shared inbox and wakes the
projector's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from events import subjects


class Feeds:
    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._subscriptions: dict[int, Any] = {}
        self.inbox: list[tuple[int, Msg]] = []
        self.wakeup = asyncio.Event()
        # Per partition: whether the last event given had nothing after it (num_pending 0).
        self.caught_up: dict[int, bool] = {}

    @property
    def partitions(self) -> list[int]:
        return sorted(self._subscriptions)

    async def open(self, partition: int, *, after: int) -> None:
        """Deliver the partition's events from sequence ``after + 1`` on."""
        await self.shut(partition)

        async def deliver(msg: Msg) -> None:
            self.inbox.append((partition, msg))
            self.caught_up[partition] = msg.metadata.num_pending == 0
            self.wakeup.set()

        self.caught_up[partition] = False
        self._subscriptions[partition] = await self._nc.jetstream().subscribe(
            f"evt.{partition}.>",
            stream=subjects.EVENTS_STREAM,
            cb=deliver,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=after + 1),
        )

    async def shut(self, partition: int) -> None:
        subscription = self._subscriptions.pop(partition, None)
        self.caught_up.pop(partition, None)
        if subscription is not None:  # (opening one must not go through everything delivered)
            self.inbox = [(p, msg) for p, msg in self.inbox if p != partition]
        if subscription is not None:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def close(self) -> None:
        for partition in list(self._subscriptions):
            await self.shut(partition)

    def take(self, limit: int) -> list[tuple[int, Msg]]:
        taken, self.inbox = self.inbox[:limit], self.inbox[limit:]
        if not self.inbox:
            self.wakeup.clear()
        return taken
