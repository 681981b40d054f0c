"""Rebuild every view from the log, into a new generation, and switch readers to it.

1. Allocate a new generation ``n`` (``projections.generations``).
2. Project the whole log into it with the live projector's own code, every partition from its
   start to the end it finds (``Projector.catch_up``), then store its positions. The live
   projector keeps the current generation up to date meanwhile: readers never see a half-built
   generation.
3. Switch the pointer to ``n``. Readers follow at their next call; the live projector moves to
   ``n`` within its ``generation_check`` and resumes each partition after the rebuild's
   position, so nothing is lost (and what is projected twice is written newest-wins).
4. Delete the older generations (views, index entries and positions).

The views are a pure function of each workflow's history, so the rebuilt ones equal the live
ones (tested against each other).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from nats.aio.client import Client as NATS

from projections._nats import Publisher
from projections.generations import Generations
from projections.projector import Projector, ProjectorSettings, drop_generation


@dataclass(frozen=True, slots=True)
class RebuildStats:
    events: int  # events (messages) read from the log
    workflows: int  # workflows given a view
    seconds: float
    generation: int  # the generation now current


async def rebuild(nc: NATS, *, settings: ProjectorSettings | None = None) -> RebuildStats:
    """Rebuild every view from the log; prints nothing, returns what it did.

    Raises ``SwitchRefused`` (a ``StoreError``) when another rebuild switched in a newer
    generation meanwhile; its views are then the current ones and this one's are deleted.
    """
    settings = settings or ProjectorSettings()
    began = time.perf_counter()
    publisher = Publisher(nc, timeout=settings.request_timeout)
    generations = Generations(nc, publisher=publisher, timeout=settings.request_timeout)
    before = await generations.ensure()
    generation = await generations.allocate()
    projector = Projector(nc, settings=settings, generation=generation)
    async with contextlib.AsyncExitStack() as closing:
        # A client's connection lives on: leave no reply subscription behind (last in, first out).
        for close in (publisher.close, generations.close, projector.close):
            closing.push_async_callback(close)
        try:
            await projector.catch_up()
            await generations.switch(generation)
        except BaseException:
            await drop_generation(nc, generation, publisher=publisher)
            raise
        for old in range(before.floor, generation):
            await drop_generation(nc, old, publisher=publisher)
        await generations.raise_floor(generation)
    return RebuildStats(
        events=projector.events_seen,
        workflows=projector.views_created,
        seconds=round(time.perf_counter() - began, 3),
        generation=generation,
    )
