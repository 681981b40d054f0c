"""What reading a workflow's new events costs nats-server, by how far back the read starts.

``python -m bench.read_gap [--actors 200] [--gaps 0,1000,10000,50000] [--sync 2m]``

The engine reads a workflow's events after its cached stream sequence (``EventStore.read_raw``
on ``evt.<wf>.>``: a direct get with ``next_by_subj``). For each gap, ``actors`` workflows get
one event, then ``gap`` events of other workflows, then one more event each; the timed part
reads each workflow from just after its first event, and reports wall time and nats-server CPU
per read. This is what makes nats-server's CPU per job grow with the backlog in S1
(``docs/performance.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.procstat import sample
from events.connection import NatsSettings, connect
from events.store import EventStore
from events.topology import ensure_topology
from sdk.embedded_server import EmbeddedServer


async def measure(url: str, pid: int, actors: int, gaps: list[int]) -> list[str]:
    nc = await connect(NatsSettings(url=url, name="read-gap"))
    js = nc.jetstream()
    await ensure_topology(js)
    store = EventStore(nc)
    lines = []
    for gap in gaps:
        firsts = [await js.publish(f"evt.g{gap}w{i}.job.j.JobQueued", b"{}") for i in range(actors)]
        for start in range(0, gap, 1000):
            await asyncio.gather(
                *(
                    js.publish(f"evt.g{gap}f{i}.wf.WorkflowStarted", b"{}")
                    for i in range(start, min(gap, start + 1000))
                )
            )
        for i in range(actors):
            await js.publish(f"evt.g{gap}w{i}.job.j.JobStarted", b"{}")
        cpu, began = sample(pid).cpu, time.perf_counter()
        for i, first in enumerate(firsts):
            found = await store.read_raw(f"evt.g{gap}w{i}.>", from_seq=first.seq + 1)
            assert len(found) == 1, f"read {len(found)} events, expected 1"
        wall = (time.perf_counter() - began) / actors * 1000
        server = (sample(pid).cpu - cpu) / actors * 1000
        lines.append(
            f"gap {gap:>7,} events: {wall:6.2f} ms per read, nats-server CPU {server:6.2f} ms"
        )
    await store.close()
    await nc.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.read_gap", description=__doc__)
    parser.add_argument("--actors", type=int, default=200, help="workflows read per gap")
    parser.add_argument("--gaps", default="0,1000,10000,50000", help="events between, per run")
    parser.add_argument("--sync", default="2m", help="nats-server sync_interval")
    args = parser.parse_args()
    gaps = [int(gap) for gap in args.gaps.split(",") if gap]
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(data_dir=Path(tmp), port=0, sync_interval=args.sync).start()
        try:
            assert server.pid is not None
            print("\n".join(asyncio.run(measure(server.url, server.pid, args.actors, gaps))))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
