"""Rebuild every view from the log, into a new generation, and switch readers to it.

1. Allocate a new generation ``n`` (``projections.generations``).
2. Project the whole log into it with the live projector's own code, every partition from its
   start to the end it finds (``Projector.catch_up``), then store its positions. With
   ``processes`` > 1 the partitions are shared out: this process projects one share and helper
   processes the others (``projections.rebuild_share``), so the reading and folding, which are
   Python's and single-threaded, run on every core. A helper that fails has its share projected
   again here, from the positions it saved. The live projector keeps the current generation up
   to date meanwhile: readers never see a half-built generation.
3. Switch the pointer to ``n``. Readers follow at their next call; the live projector moves to
   ``n`` within its ``generation_check`` and resumes each partition after the rebuild's
   position, so nothing is lost (and what is projected twice is written newest-wins).
4. Delete the older generations (views, index entries and positions).

The views are a pure function of each workflow's history, so the rebuilt ones equal the live
ones (tested against each other).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NATS

from events import subjects
from events.nats_auth import NatsAuth
from projections._nats import Publisher
from projections.generations import Generations
from projections.projector import Projector, ProjectorSettings, drop_generation
from projections.rebuild_helper import HelperFailed, Share, help_with

_log = structlog.get_logger("jetwork.rebuild")
MAX_PROCESSES = 8


def default_processes() -> int:
    """One process per core, up to ``MAX_PROCESSES``."""
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES))


def shares(processes: int) -> list[list[int]]:
    """The partitions dealt out to ``processes`` processes (at most one per partition)."""
    count = max(1, min(processes, subjects.PARTITIONS))
    return [list(range(first, subjects.PARTITIONS, count)) for first in range(count)]


@dataclass(frozen=True, slots=True)
class RebuildStats:
    events: int  # events (messages) read from the log
    workflows: int  # workflows given a view
    seconds: float
    generation: int  # the generation now current
    processes: int = 1  # the processes that shared the partitions


async def rebuild(
    nc: NATS,
    *,
    settings: ProjectorSettings | None = None,
    processes: int = 1,
    url: str | None = None,
    auth: NatsAuth | None = None,
) -> RebuildStats:
    """Rebuild every view from the log; prints nothing, returns what it did.

    ``processes``: how many processes share the partitions, this one included; the helpers
    connect to ``url`` (default: the server ``nc`` is connected to) with ``auth`` (default:
    this process's settings, ``events.nats_auth``).

    Raises ``SwitchRefused`` (a ``StoreError``) when another rebuild switched in a newer
    generation meanwhile; its views are then the current ones and this one's are deleted.
    """
    settings = settings or ProjectorSettings()
    began = time.perf_counter()
    publisher = Publisher(nc, timeout=settings.request_timeout)
    generations = Generations(nc, publisher=publisher, timeout=settings.request_timeout)
    before = await generations.ensure()
    generation = await generations.allocate()
    dealt = shares(processes)
    projector = Projector(nc, settings=settings, generation=generation)
    async with contextlib.AsyncExitStack() as closing:
        # A client's connection lives on: leave no reply subscription behind (last in, first out).
        for close in (publisher.close, generations.close, projector.close):
            closing.push_async_callback(close)
        try:
            projected = await _project(nc, projector, generation, dealt, settings, url, auth)
            await generations.switch(generation)
        except BaseException:
            await drop_generation(nc, generation, publisher=publisher)
            raise
        for old in range(before.floor, generation):
            await drop_generation(nc, old, publisher=publisher)
        await generations.raise_floor(generation)
    return RebuildStats(
        events=sum(share.events for share in projected),
        workflows=sum(share.workflows for share in projected),
        seconds=round(time.perf_counter() - began, 3),
        generation=generation,
        processes=len(dealt),
    )


async def _project(
    nc: NATS,
    projector: Projector,
    generation: int,
    dealt: list[list[int]],
    settings: ProjectorSettings,
    url: str | None,
    auth: NatsAuth | None,
) -> list[Share]:
    """Every share projected: the first here, the others by helpers (a failed helper's share
    here afterwards)."""

    async def own(partitions: list[int]) -> Share:
        seen, created = projector.events_seen, projector.views_created
        await projector.catch_up(partitions)
        return Share(projector.events_seen - seen, projector.views_created - created)

    helper_url = url or _server_url(nc)
    async with asyncio.TaskGroup() as group:
        mine = group.create_task(own(dealt[0]))
        helped = [
            group.create_task(_helped(helper_url, generation, share, settings, auth))
            for share in dealt[1:]
        ]
    done = [mine.result()]
    for share, task in zip(dealt[1:], helped, strict=True):
        result = task.result()
        done.append(result if result is not None else await own(share))
    return done


async def _helped(
    url: str, generation: int, share: list[int], settings: ProjectorSettings, auth: NatsAuth | None
) -> Share | None:
    """A helper's statistics; None when it failed (its share is then projected here)."""
    try:
        return await help_with(url, generation, share, settings, auth=auth)
    except (HelperFailed, OSError) as exc:
        _log.warning("a rebuild helper failed; its partitions are projected here", error=str(exc))
        return None


def _server_url(nc: NATS) -> str:
    server = nc.connected_url
    if server is None:
        raise ConnectionError("rebuild: the connection is not connected to a server")
    return server.geturl()
