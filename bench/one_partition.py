"""``python -m bench.one_partition``: can one partition carry a whole engine's throughput?

Single-job workflows whose ids all hash into partition 0, against the same number spread over
the 16 partitions, alternating, on one engine, one projector and one worker of 64 slots (sync 2m):
jobs/s from the first start to the last end. docs/performance.md, "One partition".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

from bench.common import NOOP, Deployment, WorkerSpec, deployment, quiesce
from events.subjects import partition_of


def workflow_ids(prefix: str, count: int, *, one_partition: bool) -> list[str]:
    names = (f"{prefix}-{i}" for i in itertools.count())
    if one_partition:
        names = (wf for wf in names if partition_of(wf) == 0)
    return list(itertools.islice(names, count))


async def run_once(dep: Deployment, prefix: str, count: int, *, one_partition: bool) -> float:
    batch = dep.driver.expect(workflow_ids(prefix, count, one_partition=one_partition))
    await dep.driver.submit(batch, NOOP)
    if not await dep.driver.wait(batch, timeout=600):
        raise TimeoutError(f"{len(batch.ended)} of {count} workflows ended")
    await quiesce(dep.nc)
    return count / (batch.last_end - batch.first_submit)


async def main(count: int, rounds: int, slots: int) -> None:
    async with deployment(sync_interval="2m", workers=[WorkerSpec("w1", slots)]) as dep:
        await run_once(dep, "warm", 1_000, one_partition=False)
        for n in range(rounds):
            for one in (True, False):
                where = "one partition" if one else "16 partitions"
                rate = await run_once(dep, f"r{n}-{int(one)}", count, one_partition=one)
                print(f"{count:,} workflows, {where}: {rate:,.0f} jobs/s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.one_partition", description=__doc__)
    parser.add_argument("--count", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--slots", type=int, default=64)
    options = parser.parse_args()
    asyncio.run(main(options.count, options.rounds, options.slots))
