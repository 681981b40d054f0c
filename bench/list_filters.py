"""``jetwork list`` with filters at scale (not a test, not in ``make bench``: populating takes
minutes).

``python -m bench.list_filters [--count 100000] [--runs 30] [--before-runs 5] [--sync 2m]``
(``--before-runs 0``: only the *after* column, in a fraction of the time)

1. Writes ``count`` workflow views straight into the store, the way the projector would over
   time (``bench.projections_scale``'s timeline: start times 10 ms apart, a running view at the
   start and the final one at the end; 2% stay running), each with inputs ``env`` (prod, dev or
   staging), ``n`` (its number), ``team`` (one of 20); its jobs' labels (``linux``, plus ``gpu``
   for one in five); one in a hundred is a sub-workflow of one of 300 parents.
2. Times ``Views.list`` with each filter (p50/p95 of ``runs`` calls, limit 50), twice on the
   same data: *before*, without the secondary index entries (``Views(secondary=False)``: the
   recent lists, then the status index read back to where the matches are, so its cost grows
   with what it skips; ``before-runs`` calls, as the slow ones take seconds each), and *after*,
   with them (``projections.keys``).
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
from projections.generations import Generations
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
    # A generation made by this code (as ``jetwork server`` makes one): listings may use the
    # secondary entries every view gets.
    generations = Generations(nc, timeout=60)
    await generations.ensure()
    await generations.close()
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


Query = Callable[[Views], Awaitable[object]]


def baselines(scan: Views) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    return [
        ("no filter, index scan", lambda: scan.list()),
        ("status=failed, index scan", lambda: scan.list(status="failed")),
    ]


def queries(count: int) -> list[tuple[str, Query]]:
    end = BASE + timedelta(milliseconds=10 * count)

    def at(fraction: float) -> datetime:
        return BASE + (end - BASE) * fraction

    def q(status: str | None = None, **where: object) -> Query:
        return lambda views: views.list(status=status, where=ListFilter(**where))  # type: ignore[arg-type]

    return [
        ("no filter (recent lists)", lambda views: views.list()),
        ("since 1 min before the newest", q(since=end - timedelta(minutes=1))),
        ("since the last 10%", q(since=at(0.9))),
        ("until the newest (everything)", q(until=end)),
        ("since+until: a window at 90%", q(since=at(0.89), until=at(0.9))),
        ("since+until: a window at 50%", q(since=at(0.49), until=at(0.5))),
        ("until 50% back", q(until=at(0.5))),
        ("until 50% back + input env=prod", q(until=at(0.5), inputs={"env": "prod"})),
        ("input env=prod (1 in 3)", q(inputs={"env": "prod"})),
        ("input team=t7 (1 in 20)", q(inputs={"team": "t7"})),
        ("label gpu (1 in 5)", q(labels=("gpu",))),
        ("parent (1 in 100 have one)", q(parent="wf-000300")),
        ("parent + status succeeded", q("succeeded", parent="wf-000300")),
        ("status failed + input env=prod", q("failed", inputs={"env": "prod"})),
        ("input n=<one workflow> (1 match)", q(inputs={"n": str(count // 2)})),
        ("input n=<one> + label gpu", q(inputs={"n": str(count // 2)}, labels=("gpu",))),
    ]


async def run(count: int, runs: int, before_runs: int, sync_interval: str) -> str:
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
            before = Views(nc, timeout=60, secondary=False)
            scan = Views(nc, timeout=60, recent_lists=False, secondary=False)
            for label, call in baselines(scan) if before_runs else []:
                p50, p95 = await timed(call, before_runs)
                lines.append(f"{label:40s} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms")
                print(lines[-1], flush=True)
            lines.append(f"{'filter':40s} {'before p50 / p95 ms':>22s} {'after p50 / p95 ms':>22s}")
            print(lines[-1], flush=True)
            for label, query in queries(count):
                old = "-"  # --before-runs 0: the after column only
                if before_runs:
                    old50, old95 = await timed(lambda q=query: q(before), before_runs)  # type: ignore[misc]
                    old = f"{old50:.1f} / {old95:.1f}"
                new50, new95 = await timed(lambda q=query: q(views), runs)  # type: ignore[misc]
                lines.append(f"{label:40s} {old:>22s} {new50:10.1f} / {new95:9.1f}")
                print(lines[-1], flush=True)  # as it goes: the slow ones take a while
            for reader in (views, before, scan):
                await reader.close()
            await nc.close()
        finally:
            server.stop()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.list_filters", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="workflow views to write")
    parser.add_argument("--runs", type=int, default=30, help="calls timed per query")
    parser.add_argument(
        "--before-runs",
        type=int,
        default=5,
        help="calls timed per query without the keys (0: not timed)",
    )
    parser.add_argument("--sync", default="2m", help="nats-server sync_interval")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.runs, args.before_runs, args.sync))


if __name__ == "__main__":
    main()
