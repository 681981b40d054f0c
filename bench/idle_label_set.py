"""S3's fan-out before and after the worker has served a second label set that went idle.

``python -m bench.idle_label_set [--runs 3] [--shell 1000] [--width 1000]``

One deployment (as ``make bench`` runs S3 after S1's shell jobs): ``runs`` fan-outs, then
``shell`` shell ``true`` jobs (their own label set), then ``runs`` fan-outs again, and again after
10 s. Each line: jobs/s and CPU ms per job of each process. A worker that divides its pulls
between every label set it serves runs the later fan-outs slower (``sdk/worker/pull.py``,
docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio

from bench import throughput
from bench.common import NOOP, SHELL_TRUE, WorkerSpec, deployment, quiesce, run_batch
from bench.report import Result
from sdk.runtime import run_service


def _line(when: str, result: Result) -> str:
    cpu = ", ".join(f"{name} {value:.2f}" for name, value in result.cpu_per_1k_jobs.items())
    return f"{when:<28} {result.figures['jobs/s']:>8,.0f} jobs/s   CPU ms per job: {cpu}"


async def measure(runs: int, shell: int, width: int) -> None:
    async with deployment(sync_interval="2m", workers=[WorkerSpec("w1", 4)]) as dep:
        await run_batch(dep, NOOP, 1_000, what="warmup")
        for _ in range(runs):
            print(_line("fan-out", await throughput.fan_out_in(dep, width)), flush=True)
        await throughput.independent(dep, SHELL_TRUE, shell, variant="shell")
        await quiesce(dep.nc)
        for _ in range(runs):
            print(
                _line("after the shell jobs", await throughput.fan_out_in(dep, width)), flush=True
            )
        await asyncio.sleep(10)  # (what a worker does with a label set idle for a while)
        for _ in range(runs):
            print(_line("10 s later", await throughput.fan_out_in(dep, width)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shell", type=int, default=1_000)
    parser.add_argument("--width", type=int, default=1_000)
    args = parser.parse_args()
    run_service(measure(args.runs, args.shell, args.width))


if __name__ == "__main__":
    main()
