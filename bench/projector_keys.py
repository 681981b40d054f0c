"""What the listing's secondary entries cost the projector (not a test, not in ``make bench``).

``python -m bench.projector_keys [--workflows 3000] [--runs 3] [--sync 2m]``

Appends the full histories of ``workflows`` three-job workflows (started, then each job queued,
started and succeeded, then succeeded: 11 events) to the event log, twice: plain (no inputs,
no labels, no parent: only the start's entries), and dressed (three inputs and a label), and
times a projector catching up on each from nothing, on ``runs`` fresh servers: events/s (best
and median: wall time, which the load of a shared machine moves a lot), and the CPU it cost per
workflow, of this process (the projector) and of nats-server (median; far steadier), with the
number of index messages it left (``JW_INDEX`` and ``JW_KEYS``). The file imports nothing of
``bench``, so the same file measures another checkout too::

    PYTHONPATH=/path/to/other/checkout python bench/projector_keys.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nats.aio.client import Client as NATS

import projections
from actors.definitions import parse_workflow
from bench.projections_scale import append_finished
from events.connection import NatsSettings, connect
from events.store import EventStore
from events.topology import ensure_topology
from projections import Projector, Views
from sdk.embedded_server import EmbeddedServer

JOBS = ("a", "b", "c")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


async def append(nc: NATS, workflows: int, *, dressed: bool) -> int:
    events = EventStore(nc)
    jobs = {job: {"run": "true", **({"labels": ["gpu"]} if dressed else {})} for job in JOBS}
    inputs = {key: {"default": ""} for key in ("env", "team", "n")} if dressed else {}
    definition = parse_workflow({"name": "bench", "inputs": inputs, "jobs": jobs})
    limit = asyncio.Semaphore(128)

    async def one(i: int) -> None:
        wf, now = f"ev-{i:05d}", BASE + timedelta(seconds=i)
        given = {"env": ("prod", "dev")[i % 2], "team": f"t{i % 20}", "n": i} if dressed else {}
        async with limit:
            await append_finished(events, wf, definition, now, given, jobs=JOBS)

    await asyncio.gather(*(one(i) for i in range(workflows)))
    return workflows * (2 + 3 * len(JOBS))


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux ``/proc``)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().decode().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def once(workflows: int, *, dressed: bool, sync: str) -> tuple[int, float, float, float, int]:
    """Events projected, seconds, CPU seconds of the projector's process and of nats-server,
    index messages; on a fresh server."""
    with tempfile.TemporaryDirectory() as data:
        server = EmbeddedServer(data_dir=Path(data), sync_interval=sync)
        server.start()
        try:
            nc = await connect(NatsSettings(url=server.url, name="bench-projector-keys"))
            await ensure_topology(nc.jetstream())
            total = await append(nc, workflows, dressed=dressed)
            views = Views(nc, timeout=60)
            projector = Projector(nc)
            began, own, server_cpu = time.perf_counter(), time.process_time(), _cpu(server.pid)
            await projector.start()
            await views.wait_caught_up(timeout=3600, interval=0.05)
            seconds = time.perf_counter() - began
            own, server_cpu = time.process_time() - own, _cpu(server.pid) - server_cpu
            await projector.stop()
            streams = await nc.jetstream().streams_info()
            index = sum(
                int(info.state.messages)
                for info in streams
                if info.config.name in ("JW_INDEX", "JW_KEYS")
            )
            await views.close()
            await nc.close()
            return total, seconds, own, server_cpu, index
        finally:
            server.stop()


async def run(workflows: int, runs: int, sync: str) -> None:
    print(f"projections from {Path(projections.__file__).parent}")
    for dressed in (False, True):
        rates, own, server, index = [], [], [], 0
        for _ in range(runs):
            total, seconds, mine, theirs, index = await once(workflows, dressed=dressed, sync=sync)
            rates.append(total / seconds)
            own.append(mine * 1000 / workflows)
            server.append(theirs * 1000 / workflows)
        label = "3 inputs + a label" if dressed else "no inputs/labels"
        print(
            f"{label:20s} {workflows} workflows: best {max(rates):8,.0f} events/s, "
            f"median {statistics.median(rates):8,.0f} events/s; CPU ms per workflow: projector "
            f"{statistics.median(own):.2f}, nats-server {statistics.median(server):.2f}; "
            f"index messages: {index}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.projector_keys", description=__doc__)
    parser.add_argument("--workflows", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sync", default="2m", help="nats-server sync_interval")
    args = parser.parse_args()
    asyncio.run(run(args.workflows, args.runs, args.sync))


if __name__ == "__main__":
    main()
