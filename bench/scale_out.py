"""S1 on the 3-node R3 cluster (``nats/cluster/``) with one engine process, then two.

The projector and the worker(s) run as on a single node, every client given the three URLs. With
one engine it owns the 16 partitions; then a second engine process is started and the benchmark
waits until the two hold 8 leases each (KV ``jw_partitions``, ``events/ownership.py``) before it
warms up and measures again. Every figure comes with CPU per job *per process* (each engine and
each cluster node apart): on two cores more engines may not add throughput, and the table shows
where the time goes instead.
"""

from __future__ import annotations

from bench import throughput
from bench.cluster import wait_balanced
from bench.common import NOOP, Deployment, WorkerSpec, deployment, run_batch
from bench.report import Result, median_of


async def _measure(dep: Deployment, *, jobs: int, variant: str) -> Result:
    await run_batch(dep, NOOP, 500, what="warmup")  # the partitions' consumers just moved
    return await throughput.independent(dep, NOOP, jobs, variant=variant, by_process=True)


async def s1(
    *,
    sync: str,
    jobs: int,
    repeats: int,
    workers: list[WorkerSpec],
    role_args: dict[str, list[str]],
) -> list[Result]:
    """``repeats`` rounds of: S1 with one engine, then with two (alternating, as noise goes)."""
    slots = " + ".join(str(spec.slots) for spec in workers)
    shape = f"{jobs:,} no-op jobs, {slots} slots, sync {sync}"
    ones: list[Result] = []
    twos: list[Result] = []
    shares = ""
    async with deployment(
        sync_interval=sync, workers=workers, role_args=role_args, cluster=True
    ) as dep:
        await wait_balanced(dep.nc, 1, role="projector")
        await run_batch(dep, NOOP, 1_000, what="warmup")
        for _ in range(repeats):
            await wait_balanced(dep.nc, 1)
            ones.append(await _measure(dep, jobs=jobs, variant=f"R3, 1 engine: {shape}"))
            second = await dep.stack.spawn("engine", "engine2", *role_args.get("engine", []))
            owners = await wait_balanced(dep.nc, 2)
            shares = " + ".join(str(n) for n in sorted(owners.values()))
            twos.append(await _measure(dep, jobs=jobs, variant=f"R3, 2 engines: {shape}"))
            await dep.stack.stop_role(second)  # gives its partitions back gracefully
    one, two = median_of(ones, "jobs/s"), median_of(twos, "jobs/s")
    two.notes.append(f"partitions per engine: {shares}")
    two.notes.append(f"2 engines ÷ 1 engine: {two.figures['jobs/s'] / one.figures['jobs/s']:.2f}")
    return [one, two]
