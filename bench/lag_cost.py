"""What a projector lag costs the server on a large store: a fresh ``lag`` against a
``LagProbe`` asked again (docs/performance.md, "a lag asked again").

``python -m bench.lag_cost [--batches 3]``

One deployment; ``--batches`` times 10,000 single-job workflows are run first (5 events each). Each
line: milliseconds per call (the caller's wall time) and nats-server CPU ms per call, over 20
calls but the probe's first (the server's CPU is read from /proc in clock ticks: coarse, a sum
over the calls).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable

from bench.common import NOOP, Deployment, WorkerSpec, deployment, quiesce, run_batch
from bench.procstat import sample
from events import subjects
from projections.generations import Generations
from projections.positions import LagProbe, lag
from sdk.runtime import run_service

CALLS = 20


def server_cpu(dep: Deployment) -> float:
    return sum(sample(pid).cpu for pid in dep.stack.server.pids().values())


async def timed(
    dep: Deployment, what: str, call: Callable[[], Awaitable[int]], calls: int = CALLS
) -> None:
    cpu_before, began = server_cpu(dep), time.perf_counter()
    for _ in range(calls):
        found = await call()
    wall = (time.perf_counter() - began) / calls
    cpu = (server_cpu(dep) - cpu_before) / calls
    print(f"{what:<40} lag {found:>6}  {wall * 1000:7.2f} ms  server CPU {cpu * 1000:6.2f} ms")


async def measure(batches: int) -> None:
    async with deployment(sync_interval="2m", workers=[WorkerSpec("w1", 4)]) as dep:
        for n in range(batches):
            await run_batch(dep, NOOP, 10_000, what=f"lagfill{n}")
        await quiesce(dep.nc)
        generations = Generations(dep.nc)
        generation = (await generations.current()).generation
        await generations.close()
        info = await dep.nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        print(f"{info.state.messages:,} events in {subjects.EVENTS_STREAM}")
        await timed(dep, "lag, each call afresh", lambda: lag(dep.nc, generation))
        probe = LagProbe(dep.nc)
        try:
            await timed(dep, "LagProbe, its first call", lambda: probe.lag(generation), calls=1)
            await timed(dep, "LagProbe, asked again", lambda: probe.lag(generation))
            await run_batch(dep, NOOP, 1_000, what="lagmore")
            await quiesce(dep.nc)
            await timed(dep, "LagProbe, after 1,000 more jobs", lambda: probe.lag(generation))
        finally:
            await probe.close()


def _batches(text: str) -> int:
    count = int(text)
    if count < 0:
        raise argparse.ArgumentTypeError(f"--batches must be 0 or more, not {count}")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=_batches, default=3, help="10,000-workflow batches first")
    run_service(measure(parser.parse_args().batches))


if __name__ == "__main__":
    main()
