"""Micro-benchmark of the event store beside the raw nats-py rates, measured in the same run.

Scenarios: raw sync publish (the round-trip ceiling), raw pipelined publish, store append to one
actor (sequential CAS: every append waits for the previous), store appends spread over many actors
with many in flight (how the engine writes), and replay of one actor's history.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client as NATS

from bench.stack import server_duration
from events.catalog import JobRetryScheduled
from events.connection import NatsSettings, connect
from events.store import ActorRef, EventStore
from events.topology import ensure_topology
from sdk.embedded_server import EmbeddedServer

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SYNC = "raw sync publish"
PIPELINED = "raw pipelined publish (1000 in flight)"
STORE_SEQ = "store append, one actor, sequential CAS"
STORE_MANY = "store append, many actors, 256 in flight"
REPLAY = "store replay of one actor (direct get)"
FETCH_ACK = "raw pull fetch(500) + ack"
_RAW_STREAM = "BENCH_RAW"


@dataclass
class Figure:
    name: str
    rate: float
    unit: str


def _event(wf: str, job: str, n: int) -> JobRetryScheduled:
    return JobRetryScheduled(workflow_id=wf, job=job, attempt=n, delay=0.0, not_before=NOW)


async def _timed(count: int, body: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await body()
    return count / (time.perf_counter() - started)


async def raw_sync_publish(nc: NATS, count: int) -> float:
    js = nc.jetstream()

    async def body() -> None:
        for _ in range(count):
            await js.publish("evt.bench-raw.wf.Raw", b'{"n":1}')

    return await _timed(count, body)


async def raw_pipelined_publish(nc: NATS, count: int, in_flight: int = 1000) -> float:
    js = nc.jetstream()
    limit = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with limit:
            await js.publish("evt.bench-raw.wf.Pipelined", b'{"n":1}')

    async def body() -> None:
        await asyncio.gather(*(one() for _ in range(count)))

    return await _timed(count, body)


async def raw_fetch_ack(nc: NATS, count: int, run: int, batch: int = 500) -> float:
    """Pull ``count`` messages from a durable consumer in fetches of ``batch``, acking each."""
    js = nc.jetstream()
    subject = f"bench.raw.{run}"
    await js.add_stream(name=f"{_RAW_STREAM}_{run}", subjects=[subject])
    await raw_pipelined_publish_to(nc, subject, count)
    sub = await js.pull_subscribe(subject, durable=f"raw-{run}", stream=f"{_RAW_STREAM}_{run}")

    async def body() -> None:
        done = 0
        while done < count:
            for msg in await sub.fetch(batch, timeout=5):
                await msg.ack()
                done += 1
        await nc.flush()

    rate = await _timed(count, body)
    await js.delete_stream(f"{_RAW_STREAM}_{run}")
    return rate


async def raw_pipelined_publish_to(nc: NATS, subject: str, count: int) -> None:
    js = nc.jetstream()
    limit = asyncio.Semaphore(1000)

    async def one() -> None:
        async with limit:
            await js.publish(subject, b'{"n":1}')

    await asyncio.gather(*(one() for _ in range(count)))


async def store_sequential(store: EventStore, count: int, run: int) -> float:
    wf = f"bench-seq-{run}"
    actor = ActorRef.job(wf, "a")

    async def body() -> None:
        last = 0
        for n in range(count):
            event = _event(wf, "a", n)
            last = await store.append(actor, [event], expected_seq=last, command_id=f"{wf}-{n}")

    return await _timed(count, body)


async def store_many_actors(store: EventStore, count: int, run: int, in_flight: int = 256) -> float:
    wf = f"bench-many-{run}"
    limit = asyncio.Semaphore(in_flight)

    async def one(n: int) -> None:
        async with limit:
            actor = ActorRef.job(wf, f"j{n}")
            await store.append(
                actor, [_event(wf, f"j{n}", 1)], expected_seq=0, command_id=f"{wf}-{n}"
            )

    async def body() -> None:
        await asyncio.gather(*(one(n) for n in range(count)))

    return await _timed(count, body)


async def store_replay(store: EventStore, count: int, run: int) -> float:
    wf = f"bench-replay-{run}"
    actor = ActorRef.job(wf, "a")
    last = 0
    for chunk in range(0, count, 100):
        events = [_event(wf, "a", n) for n in range(chunk, min(count, chunk + 100))]
        last = await store.append(actor, events, expected_seq=last, command_id=f"{wf}-{chunk}")

    async def body() -> None:
        loaded = await store.load(actor)
        assert len(loaded) == count

    return await _timed(count, body)


async def run(*, count: int = 3000, repeats: int = 3, sync_interval: str = "2m") -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(
            data_dir=Path(tmp), sync_interval=server_duration(sync_interval)
        ).start()
        try:
            nc = await connect(NatsSettings(url=server.url, name="bench"))
            await ensure_topology(nc.jetstream())
            store = EventStore(nc)
            scenarios: list[tuple[str, str, Callable[[int], Awaitable[float]]]] = [
                (SYNC, "msg/s", lambda _: raw_sync_publish(nc, count)),
                (PIPELINED, "msg/s", lambda _: raw_pipelined_publish(nc, count * 3)),
                (FETCH_ACK, "msg/s", lambda run: raw_fetch_ack(nc, count * 3, run)),
                (STORE_SEQ, "events/s", lambda run: store_sequential(store, count, run)),
                (STORE_MANY, "events/s", lambda run: store_many_actors(store, count * 3, run)),
                (REPLAY, "events/s", lambda run: store_replay(store, count * 3, run)),
            ]
            figures = []
            for name, unit, scenario in scenarios:
                rates = [await scenario(run) for run in range(repeats)]
                figures.append(Figure(name, statistics.median(rates), unit))
            await nc.close()
            return figures
        finally:
            server.stop()


def report(figures: list[Figure], *, sync_interval: str) -> str:
    by_name = {figure.name: figure.rate for figure in figures}
    ratio_base = {STORE_SEQ: by_name[SYNC], STORE_MANY: by_name[PIPELINED]}
    lines = [f"event store micro-benchmark (median of 3, sync_interval={sync_interval})", ""]
    lines.append(f"{'scenario':<44}{'rate':>12}  {'unit':<9}{'vs raw':>8}")
    for figure in figures:
        base = ratio_base.get(figure.name)
        ratio = f"{figure.rate / base:7.0%}" if base else ""
        lines.append(f"{figure.name:<44}{figure.rate:>12,.0f}  {figure.unit:<9}{ratio:>8}")
    return "\n".join(lines)
