"""Stress the worker with many short jobs whose length sits around its cancellation check interval.

Each attempt's cancellation watcher is mid-check (a direct get in flight) when its job ends, so
the end of a job races the watcher's reply: the race that used to leave a finished job `running`
for ever (issue 17, docs/architecture.md "Workers" → "Shutdown"). Shell jobs (``sleep``) and
Python handlers (``asyncio.sleep`` and a sync ``time.sleep`` in a thread) run side by side in
several slots; every job must end.

``make test`` runs a short version (tests/integration/test_worker_stress.py); the long one:

    python -m tests.worker_stress --jobs 20000 --slots 8

starts its own nats-server and prints how many jobs ended and how long it took.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from events import subjects
from events.connection import NatsSettings, connect
from events.tasks import stack_of
from events.topology import ensure_topology
from sdk.embedded_server import EmbeddedServer
from sdk.worker import Worker
from sdk.worker.job_context import JobContext
from tests.jobs_harness import JobsHarness, fast_config

ENDED = ("JobSucceeded", "JobFailed", "JobCancelled")


@dataclass
class StressResult:
    queued: int
    ended: set[str] = field(default_factory=set)
    seconds: float = 0.0
    stuck_tasks: str = ""

    @property
    def missing(self) -> int:
        return self.queued - len(self.ended)


async def stress(
    nc: NATS,
    nats_url: str,
    *,
    workflow_id: str,
    jobs: int,
    slots: int = 8,
    check_interval: float = 0.05,
    deadline: float = 60.0,
    seed: int = 1,
) -> StressResult:
    """Queue ``jobs`` short jobs (a third shell, a third async, a third sync Python), run them on
    one worker with ``slots`` slots, wait until every one ended or ``deadline`` seconds passed."""
    rng = random.Random(seed)
    config = fast_config(
        nats_url,
        max_concurrent_jobs=slots,
        cancellation_check_interval=check_interval,
        heartbeat_interval=0.5,
        lease_ttl=30.0,  # a stuck job must not be rescued by another delivery
        shutdown_grace=5.0,
    )
    worker = Worker(config)

    @worker.job("nap")
    async def nap(ctx: JobContext, inputs: dict[str, float]) -> None:
        await asyncio.sleep(inputs["seconds"])

    @worker.job("doze")
    def doze(ctx: JobContext, inputs: dict[str, float]) -> None:
        time.sleep(inputs["seconds"])

    result = StressResult(queued=jobs)
    all_ended = asyncio.Event()

    async def on_event(msg: Msg) -> None:
        event = subjects.parse_event_subject(msg.subject)
        if event is not None and event.job is not None and event.event_type in ENDED:
            result.ended.add(event.job)
            if len(result.ended) >= jobs:
                all_ended.set()

    sub = await nc.subscribe(subjects.workflow_events(workflow_id), cb=on_event)
    harness = JobsHarness(nc)
    started = time.monotonic()
    await worker.start()
    try:
        for i in range(jobs):
            # Lengths around the check interval: the job ends while a check is in flight.
            seconds = round(check_interval * rng.uniform(0.3, 1.7), 4)
            kind = i % 3
            if kind == 0:
                await harness.queue(workflow_id, f"j{i}", run=f"sleep {seconds}")
            else:
                handler = "nap" if kind == 1 else "doze"
                await harness.queue(workflow_id, f"j{i}", uses=handler, with_={"seconds": seconds})
        try:
            await asyncio.wait_for(all_ended.wait(), deadline)
        except TimeoutError:
            result.stuck_tasks = unfinished_tasks()
        result.seconds = time.monotonic() - started
    finally:
        await sub.unsubscribe()
        worker.request_shutdown(graceful=False)
        await asyncio.wait([asyncio.ensure_future(worker.wait_closed())], timeout=10)
    return result


def unfinished_tasks() -> str:
    """The await chain of every unfinished asyncio task (what a stuck job waits for)."""
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    return "\n".join(stack_of(task) for task in tasks)


async def _main(options: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="jetwork-stress-") as data:
        server = EmbeddedServer(data_dir=Path(data), sync_interval="2m")
        server.start()
        try:
            nc = await connect(NatsSettings(url=server.url, name="jetwork-stress"))
            await ensure_topology(nc.jetstream())
            result = await stress(
                nc,
                server.url,
                workflow_id="stress",
                jobs=options.jobs,
                slots=options.slots,
                check_interval=options.check_interval,
                deadline=options.deadline,
                seed=options.seed,
            )
            await nc.close()
        finally:
            server.stop()
    print(
        f"{len(result.ended)}/{result.queued} jobs ended in {result.seconds:.1f}s "
        f"({options.slots} slots, check interval {options.check_interval:g}s)"
    )
    if result.missing:
        print(f"{result.missing} job(s) never ended; unfinished tasks:\n{result.stuck_tasks}")
        return 1
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.worker_stress", description=__doc__)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--check-interval", type=float, default=0.05)
    parser.add_argument("--deadline", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=1)
    raise SystemExit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
