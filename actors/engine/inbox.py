"""What an engine pulls for the partitions it owns: two durable consumers per partition.

- ``engine-p<n>-cmd`` on JW_COMMANDS, filter ``cmd.<n>.>``: the partition's commands and fired
  timers (a work queue: each is removed once acknowledged);
- ``engine-p<n>-evt`` on JW_EVENTS, filtered to the partition's ``subjects.RESULT_EVENTS``: what
  workers append that the engine reacts to (results, cancellations; not claims).

Both are created by whichever engine takes the partition (create, or update to this
configuration) and deliver everything not yet acknowledged, so a new owner resumes exactly where
the last one stopped. Their ack wait is short (``EngineSettings.ack_wait``): what a killed owner
held comes back soon after its partitions are taken over. Every feed wakes one shared event, and
the engine's loop takes what all of them delivered as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from actors.engine.settings import EngineSettings
from events import subjects
from events.pull import PullFeed


def consumers(partition: int) -> list[tuple[str, str, list[str]]]:
    """(stream, durable name, filters) of the consumers of one partition."""
    return [
        (
            subjects.COMMANDS_STREAM,
            f"engine-p{partition}-cmd",
            [subjects.partition_commands(partition)],
        ),
        (
            subjects.EVENTS_STREAM,
            f"engine-p{partition}-evt",
            subjects.partition_results(partition),
        ),
    ]


class Inbox:
    def __init__(self, nc: NATS, settings: EngineSettings) -> None:
        self._nc = nc
        self._settings = settings
        self._feeds: dict[int, list[PullFeed]] = {}
        self._wakeup = asyncio.Event()

    async def open(self, partition: int) -> None:
        """Bind the partition's consumers (creating them if needed) and start pulling."""
        js = self._nc.jetstream()
        feeds = []
        for stream, durable, filters in consumers(partition):
            await js.add_consumer(
                stream,
                ConsumerConfig(
                    name=durable,
                    durable_name=durable,
                    ack_policy=AckPolicy.EXPLICIT,
                    deliver_policy=DeliverPolicy.ALL,
                    ack_wait=self._settings.ack_wait,
                    max_deliver=-1,
                    max_ack_pending=self._settings.max_ack_pending,
                    filter_subject=filters[0] if len(filters) == 1 else None,
                    filter_subjects=filters if len(filters) > 1 else None,
                ),
            )
            feed = PullFeed(
                self._nc,
                stream=stream,
                consumer=durable,
                window=self._settings.batch * 2,
                expires=self._settings.poll_interval * 10,
                wakeup=self._wakeup,
            )
            await feed.start()
            feeds.append(feed)
        self._feeds[partition] = feeds
        self._wakeup.set()  # ask for messages at once

    async def shut(self, partition: int) -> None:
        """Stop pulling the partition; what was delivered and not acked comes back elsewhere."""
        for feed in self._feeds.pop(partition, []):
            with contextlib.suppress(Exception):
                await feed.stop()

    async def close(self) -> None:
        for partition in list(self._feeds):
            await self.shut(partition)

    def wake(self) -> None:
        self._wakeup.set()

    async def next_batch(self, max_messages: int) -> list[Msg]:
        """Whatever the partitions' feeds delivered, up to ``max_messages``; waits at most the
        poll interval for something (or a ``wake``)."""
        for feeds in list(self._feeds.values()):
            for feed in feeds:
                await feed.top_up()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.poll_interval):
                await self._wakeup.wait()
        self._wakeup.clear()
        batch: list[Msg] = []
        for feeds in list(self._feeds.values()):
            for feed in feeds:
                if len(batch) >= max_messages:
                    self._wakeup.set()  # more is waiting: come back at once
                    return batch
                batch += feed.take(max_messages - len(batch))
        return batch
