"""Fan-outs back to back for a while: does a run now and then take much longer, does the cost
per job grow as the streams do?

``python -m bench.back_to_back [--seconds 170] [--width 1000]``

One deployment; each line: seconds since it started, jobs/s of the fan-out and each process's
CPU ms per job. A run under half the median is marked ``slow`` (an expired pull request not
asked again left every process idle at a fan-out's start: docs/performance.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench import throughput
from bench.common import WorkerSpec, deployment
from sdk.runtime import run_service


async def measure(seconds: float, width: int) -> None:
    began = time.monotonic()
    rates: list[float] = []
    async with deployment(sync_interval="2m", workers=[WorkerSpec("w1", 4)]) as dep:
        while time.monotonic() - began < seconds:
            at = time.monotonic() - began
            result = await throughput.fan_out_in(dep, width)
            rate = float(result.figures["jobs/s"])
            rates.append(rate)
            cpu = " ".join(f"{k} {v:.2f}" for k, v in result.cpu_per_1k_jobs.items())
            slow = " slow" if rate < statistics.median(rates) / 2 else ""
            print(f"{at:6.1f} s {rate:8,.0f} jobs/s   CPU ms per job: {cpu}{slow}", flush=True)
    median = statistics.median(rates)
    slow_runs = sum(rate < median / 2 for rate in rates)
    print(f"{len(rates)} fan-outs, median {median:,.0f} jobs/s, {slow_runs} under half of it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=170.0)
    parser.add_argument("--width", type=int, default=1000)
    args = parser.parse_args()
    run_service(measure(args.seconds, args.width))


if __name__ == "__main__":
    main()
