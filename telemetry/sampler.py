"""What no single event tells, sampled on an interval: queue depth per label set, projector lag.

Run by ``jetwork server`` beside the engine when metrics are served. Each sample reads the label
sets (``jw_labelsets``), each set's consumer (pending = not delivered to any worker yet; ack
pending = delivered, running or prefetched) and, when some wait, the oldest waiting ``JobQueued``
(one direct get), and the projector's stored positions against the stream. A failed sample is
logged and the gauges keep their last values until the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from events import subjects
from events.catalog import JobQueued
from events.codec import decode
from events.dispatch import LabelSet
from projections.reader import Views
from telemetry import metrics

_log = structlog.get_logger("jetwork.telemetry")


INTERVAL_ENV: Final = "JETWORK_METRICS_INTERVAL"


def interval_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between samples: ``JETWORK_METRICS_INTERVAL`` (default 5)."""
    raw = environ.get(INTERVAL_ENV) or "5"
    try:
        every = float(raw)
    except ValueError:
        every = 0.0
    if not every > 0:
        raise ValueError(f"{INTERVAL_ENV}={raw!r} is not a positive number of seconds")
    return every


class Sampler:
    def __init__(self, nc: NATS, *, every: float = 5.0) -> None:
        self._nc = nc
        self._every = every
        self._reader = Views(nc)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sample()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._reader.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.sample()

    async def sample(self) -> None:
        try:
            metrics.PROJECTOR_LAG.set(await self._reader.lag())
            for labelset in await self._reader.labelsets():
                await self._sample_queue(labelset)
        except Exception as exc:  # the server away: try again next time
            _log.warning("sampling metrics failed", error=str(exc) or type(exc).__name__)

    async def _sample_queue(self, labelset: LabelSet) -> None:
        js = self._nc.jetstream()
        try:
            info = await js.consumer_info(subjects.EVENTS_STREAM, labelset.consumer)
        except NotFoundError:  # no worker ever served it: nothing delivered, all waiting
            return
        pending = int(info.num_pending or 0)
        metrics.QUEUE_DEPTH.labels(labelset.route).set(pending)
        metrics.QUEUE_UNACKED.labels(labelset.route).set(int(info.num_ack_pending or 0))
        oldest = 0.0
        if pending and info.delivered is not None:
            first = await js.get_msg(
                subjects.EVENTS_STREAM,
                seq=int(info.delivered.stream_seq or 0) + 1,
                subject=labelset.subject,
                next=True,
                direct=True,
            )
            event = decode(first.data or b"", subject=first.subject or "?")
            if isinstance(event, JobQueued):
                waited = datetime.now(UTC) - event.claimable_from()
                oldest = max(0.0, waited.total_seconds())
        metrics.QUEUE_OLDEST_SECONDS.labels(labelset.route).set(oldest)
