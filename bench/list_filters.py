"""``jetwork list`` with filters at scale (not a test, not in ``make bench``: populating takes
minutes).

``python -m bench.list_filters [--count 100000] [--runs 30] [--sync 2m]``

1. Writes ``count`` workflow views straight into the store, the way the projector would over
   time (``bench.projections_scale``'s timeline: start times 10 ms apart, a running view at the
   start and the final one at the end; 2% stay running), each with inputs ``env`` (prod, dev or
   staging), ``n`` (its number), ``team`` (one of 20); its jobs' labels (``linux``, plus ``gpu``
   for one in five); one in a hundred is a sub-workflow of one of 300 parents.
2. Times ``Views.list`` with each filter (p50/p95 of ``runs`` calls, limit 50): filters most
   workflows match stop early; a filter few match, or ``--until`` far in the past, reads the
   index back to where the matches are (the listing's cost grows with what it skips).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from nats.aio.client import Client as NATS

from bench.projections_scale import BASE, _timeline, timed
from events.catalog import ParentLink
from events.connection import NatsSettings, connect
from events.errors import StoreError
from events.topology import ensure_topology
from projections import Views
from projections._nats import Direct, Publisher
from projections.index import micros
from projections.recent import RecentWriter
from projections.search import ListFilter
from projections.store import KV_PREFIX, KV_STREAM, ViewStore, Written
from projections.views import WorkflowView

ENVS = ("prod", "dev", "staging")


def _dressed(i: int, view: WorkflowView, rng: random.Random) -> WorkflowView:
    """``view`` with the inputs, labels and parent workflow ``i`` always gets (seeded by i)."""
    mine = random.Random(i)
    labels = ("gpu", "linux") if mine.random() < 0.2 else ("linux",)
    parent = None
    if mine.random() < 0.01:
        parent = ParentLink(workflow_id=f"wf-{mine.randrange(300) * 300:06d}", job="j", attempt=1)
    inputs = {"env": mine.choice(ENVS), "n": i, "team": f"t{mine.randrange(20)}"}
    return view.model_copy(update={"inputs": inputs, "labels": labels, "parent": parent})


async def populate(nc: NATS, count: int) -> float:
    # Long timeouts: this machine is shared, and a populate that gives up measures nothing.
    store = ViewStore(nc, generation=1, timeout=60)
    recent = RecentWriter(
        Direct(nc, KV_STREAM, timeout=60),
        Publisher(nc, timeout=60),
        prefix=KV_PREFIX,
        generation=1,
    )
    written: dict[int, Written] = {}
    rng = random.Random(7)
    moments = _timeline(count, random.Random(42))
    began = time.perf_counter()
    for at in range(0, len(moments), 256):
        chunk = moments[at : at + 256]

        async def write(i: int, view: WorkflowView, seq: int) -> None:
            view = _dressed(i, view, rng)
            for attempt in range(5):
                try:
                    written[i] = await store.write(view, seq, written.get(i, Written()))
                    break
                except StoreError:
                    if attempt == 4:
                        raise
            await recent.note(
                view.workflow_id,
                name=view.name,
                status=view.status,
                started_us=micros(view.started_at),
            )

        seqs = range(at + 1, at + 1 + len(chunk))
        await asyncio.gather(
            *(write(i, view, seq) for (_, i, view), seq in zip(chunk, seqs, strict=True))
        )
        await recent.flush()
        await store.mark_index()
        if at % 25_600 == 0:
            print(f"  … {at} writes, {time.perf_counter() - began:.0f}s", file=sys.stderr)
    return time.perf_counter() - began


def queries(
    views: Views, scan: Views, count: int
) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    end = BASE + timedelta(milliseconds=10 * count)

    def at(fraction: float) -> datetime:
        return BASE + (end - BASE) * fraction

    def q(**where: object) -> Callable[[], Awaitable[object]]:
        return lambda: views.list(where=ListFilter(**where))  # type: ignore[arg-type]

    return [
        ("no filter (recent lists)", lambda: views.list()),
        ("baseline: no filter, index scan", lambda: scan.list()),
        ("baseline: status=failed, index scan", lambda: scan.list(status="failed")),
        ("since 1 min before the newest", q(since=end - timedelta(minutes=1))),
        ("since the last 10%", q(since=at(0.9))),
        ("until the newest (everything)", q(until=end)),
        ("since+until: a window at 90%", q(since=at(0.89), until=at(0.9))),
        ("since+until: a window at 50%", q(since=at(0.49), until=at(0.5))),
        ("until 50% back", q(until=at(0.5))),
        ("input env=prod (1 in 3)", q(inputs={"env": "prod"})),
        ("input team=t7 (1 in 20)", q(inputs={"team": "t7"})),
        ("label gpu (1 in 5)", q(labels=("gpu",))),
        ("parent (1 in 100 have one)", q(parent="wf-000300")),
        (
            "status failed + input env=prod",
            lambda: views.list(status="failed", where=ListFilter(inputs={"env": "prod"})),
        ),
        ("input n=<one workflow> (1 match)", q(inputs={"n": str(count // 2)})),
    ]


async def run(count: int, runs: int, sync_interval: str) -> str:
    from sdk.embedded_server import EmbeddedServer

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedServer(data_dir=Path(data), sync_interval=sync_interval)
        server.start()
        try:
            nc = await connect(NatsSettings(url=server.url, name="bench-list-filters"))
            await ensure_topology(nc.jetstream())
            seconds = await populate(nc, count)
            lines.append(f"populate: {count} workflows in {seconds:.0f}s")
            print(lines[-1], flush=True)
            views = Views(nc, timeout=60)
            scan = Views(nc, timeout=60, recent_lists=False)
            for label, call in queries(views, scan, count):
                p50, p95 = await timed(call, runs)
                lines.append(f"{label:40s} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms")
                print(lines[-1], flush=True)  # as it goes: the slow ones take a while
            await views.close()
            await scan.close()
            await nc.close()
        finally:
            server.stop()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.list_filters", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="workflow views to write")
    parser.add_argument("--runs", type=int, default=30, help="calls timed per query")
    parser.add_argument("--sync", default="2m", help="nats-server sync_interval")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.runs, args.sync))


if __name__ == "__main__":
    main()
