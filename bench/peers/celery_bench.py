"""Celery side of the peer benchmark.
  independent N : N no-op tasks, time until all results are in.
  fanout N      : chord(group of N no-op) -> gather: one fan-out/fan-in workflow of N+1 jobs.
  chains W L    : W workflows, each a chain of L no-op jobs.
Prints one line: scenario, jobs, seconds, jobs/s.

Copied from ``../shared/peers/celery_bench.py``, formatted for this repository's linter; the
measurement is unchanged except that the line also gives the CPU seconds this client process
spent in the timed part (``cpu=``), so that CPU per job counts the client as jetwork's counts
its driver.
"""

import sys
import time

from celery import chain, chord, group
from celery_app import gather, noop


def main():
    kind = sys.argv[1]
    t = time.perf_counter()
    cpu = time.process_time()
    if kind == "independent":
        n = int(sys.argv[2])
        rs = [noop.delay(i) for i in range(n)]
        for r in rs:
            r.get(timeout=600)
        jobs = n
    elif kind == "fanout":
        n = int(sys.argv[2])
        r = chord(group(noop.s(i) for i in range(n)))(gather.s())
        assert r.get(timeout=600) == n
        jobs = n + 1
    elif kind == "chains":
        w, length = int(sys.argv[2]), int(sys.argv[3])
        rs = [
            chain(*([noop.s(0)] + [noop.s() for _ in range(length - 1)])).delay() for _ in range(w)
        ]
        for r in rs:
            r.get(timeout=600)
        jobs = w * length
    dt = time.perf_counter() - t
    cpu = time.process_time() - cpu
    print(f"celery {kind} jobs={jobs} seconds={dt:.2f} jobs_per_s={jobs / dt:.0f} cpu={cpu:.3f}")


if __name__ == "__main__":
    main()
