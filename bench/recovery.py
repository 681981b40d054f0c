"""S4 replay (one big workflow's state, all projections) and S5 scale (many open workflows,
engine killed and restarted with them open)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any, Final

from actors import workflow
from bench.common import NOOP, Deployment, Window, WorkerSpec, quiesce, run_batch
from bench.report import Result
from events import subjects
from projections.rebuild import default_processes, rebuild

REBUILD_EVENTS: Final = 100_000
HELD: Final[dict[str, Any]] = {"name": "held", "jobs": {"j": {"uses": "noop", "labels": ["held"]}}}


# --- S4 ----------------------------------------------------------------------------------------


async def replay_workflow(dep: Deployment, wf_id: str, *, repeats: int = 3) -> Result:
    """Read one workflow's history (batched direct get + decode) and fold it (``replay``)."""
    reads, read_cpus, folds = [], [], []
    events = 0
    for _ in range(repeats):
        began, began_cpu = time.perf_counter(), time.process_time()
        history = await dep.driver.store.history(wf_id)
        read, read_cpu = time.perf_counter(), time.process_time()
        state = workflow.replay(history)
        folded = time.perf_counter()
        reads.append(read - began)
        read_cpus.append(read_cpu - began_cpu)
        folds.append(folded - read)
        events = len(history)
        assert state.status is not None
    read_s, fold_s = statistics.median(reads), statistics.median(folds)
    total = read_s + fold_s
    return Result(
        "S4",
        f"rebuild one workflow's state ({len(state.jobs):,} jobs, {events:,} events)",
        figures={
            "ms": round(total * 1000, 1),
            "events/s": round(events / total),
            "read + decode (ms)": round(read_s * 1000, 1),
            # The reading process's own CPU in it: the rest is waiting for the server (a read
            # once took 150 ms for 40 ms of CPU: docs/performance.md).
            "of which CPU (ms)": round(statistics.median(read_cpus) * 1000, 1),
            "fold (ms)": round(fold_s * 1000, 1),
        },
        notes=[
            f"median of {repeats}; read + decode of each (ms): "
            + ", ".join(f"{r * 1000:.1f}" for r in reads)
        ],
    )


async def stream_events(dep: Deployment) -> int:
    info = await dep.nc.jetstream().stream_info(subjects.EVENTS_STREAM)
    return int(info.state.messages)


async def rebuild_projections(dep: Deployment, *, at_least: int = REBUILD_EVENTS) -> Result:
    """Rebuild every view from the log (``projections.rebuild``), in the driver process."""
    topped_up = 0
    while (have := await stream_events(dep)) < at_least:
        count = min(10_000, (at_least - have) // 5 + 1)  # a single-job workflow is 5 events
        await run_batch(dep, NOOP, count, what="s4fill")
        topped_up += count
    window = Window(dep).open()
    helpers_before = _children_cpu()
    stats = await rebuild(dep.nc, processes=default_processes())
    helpers_cpu = _children_cpu() - helpers_before
    window.close()
    result = Result(
        "S4",
        f"rebuild all projections ({stats.events:,} events, {stats.workflows:,} workflows, "
        f"{stats.processes} processes)",
        figures={
            "events/s": round(stats.events / stats.seconds),
            "seconds": stats.seconds,
        },
    )
    window.fill(result, max(1, stats.events // 1000) * 1000)
    result.cpu_per_1k_jobs = {}  # per 1,000 events, not jobs: kept in figures instead
    cpu = {k: v.cpu - window.before[k].cpu for k, v in window.after.items() if k in window.before}
    result.figures["driver CPU-s (rebuild runs here)"] = round(cpu.get("driver", 0.0), 2)
    result.figures["nats-server CPU-s"] = round(cpu.get("nats-server", 0.0), 2)
    result.figures["helper processes CPU-s"] = round(helpers_cpu, 2)
    if topped_up:
        result.notes.append(f"{topped_up:,} single-job workflows run first to reach the size")
    return result


def _children_cpu() -> float:
    """CPU seconds of this process's children that have exited (the rebuild's helpers)."""
    times = os.times()
    return times.children_user + times.children_system


# --- S5 ----------------------------------------------------------------------------------------


async def open_workflows(dep: Deployment, count: int) -> list[Result]:
    """``count`` workflows whose jobs need label ``held`` (no worker has it yet): all open.

    Then the engine is SIGKILLed and started again; a fresh workflow submitted while it was down
    shows when it processes again. Last, a worker with the label arrives and the jobs drain.
    """
    prefix = dep.next_prefix("s5")
    await dep.driver.observe(queued=True)
    batch = dep.driver.expect((f"{prefix}-{i}" for i in range(count)), queued=count)
    window = Window(dep).open()
    began = time.time()
    await dep.driver.submit(batch, HELD)
    await asyncio.wait_for(batch.all_queued.wait(), 600)
    opened = time.time()
    await quiesce(dep.nc)
    window.close()
    (engine,) = dep.stack.by_kind("engine")
    memory = engine.sample()
    opened_result = Result(
        "S5",
        f"{count:,} workflows open at once (jobs held)",
        figures={
            "seconds": round(opened - began, 2),
            "workflows opened/s": round(count / (opened - began), 1),
            "engine RSS (MB)": round(memory.rss / 2**20, 1),
            "engine peak RSS (MB)": round(memory.hwm / 2**20, 1),
        },
    )
    window.fill(opened_result, count)

    engine.kill()
    await engine.process.wait()
    dep.stack.roles.remove(engine)
    # The server drops a dead client's pull requests a moment after its socket closes; a command
    # published before that is handed to the dead engine and waits for the ack_wait (30 s), which
    # measures the crash, not the restart (seen once). Submit once they are gone.
    probe_id = f"{prefix}-probe"
    await _pull_requests_gone(
        dep, subjects.COMMANDS_STREAM, f"engine-p{subjects.partition_of(probe_id)}-cmd"
    )
    probe = dep.driver.expect([probe_id])
    await dep.driver.submit(probe, NOOP)
    spawned = time.time()
    await dep.stack.spawn("engine", "engine")
    ready = time.time()
    await dep.driver.wait(probe, timeout=120)
    processed = probe.last_end
    restart = Result(
        "S5",
        f"engine SIGKILLed and restarted with {count:,} open",
        figures={
            "seconds": round(processed - spawned, 2),
            "process start → ready (s)": round(ready - spawned, 2),
            "start → a new workflow done (s)": round(processed - spawned, 2),
        },
        notes=["the new engine takes the partitions once the killed one's leases expire (4 s)"],
    )

    drain_window = Window(dep).open()
    released = time.time()
    await dep.add_worker(WorkerSpec("w-held", 4, "held"))
    if not await dep.driver.wait(batch, timeout=600):
        raise TimeoutError(f"S5: {len(batch.ended)} of {count} held workflows ended")
    drained = batch.last_end
    await quiesce(dep.nc)
    drain_window.close()
    (engine,) = dep.stack.by_kind("engine")
    drain = Result(
        "S5",
        f"{count:,} held jobs released after the restart (cold engine)",
        figures={
            "jobs/s": round(count / (drained - released), 1),
            "engine peak RSS (MB)": round(engine.sample().hwm / 2**20, 1),
        },
        notes=["includes the new worker's start-up (a process with 4 slots)"],
    )
    drain_window.fill(drain, count)
    return [opened_result, restart, drain]


async def _pull_requests_gone(
    dep: Deployment, stream: str, consumer: str, *, timeout: float = 15.0
) -> None:
    """Until no pull request waits on the consumer (pull requests expire after 10 s)."""
    js = dep.nc.jetstream()
    deadline = time.monotonic() + timeout
    while (await js.consumer_info(stream, consumer)).num_waiting:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pull requests still wait on {consumer} after {timeout} s")
        await asyncio.sleep(0.01)


async def kill_under_load(dep: Deployment, count: int, *, after: float = 1.0) -> Result:
    """SIGKILL the engine ``after`` s into a batch, restart it at once; when does all end?"""
    prefix = dep.next_prefix("s5k")
    batch = dep.driver.expect(f"{prefix}-{i}" for i in range(count))
    began = time.time()
    submitting = asyncio.create_task(dep.driver.submit(batch, NOOP))
    await asyncio.sleep(after)
    (engine,) = dep.stack.by_kind("engine")
    engine.kill()
    await engine.process.wait()
    dep.stack.roles.remove(engine)
    ended_before = len(batch.ended)
    await dep.stack.spawn("engine", "engine")
    await submitting
    if not await dep.driver.wait(batch, timeout=300):
        raise TimeoutError(f"S5 kill: {len(batch.ended)} of {count} ended")
    await quiesce(dep.nc)
    return Result(
        "S5",
        f"engine SIGKILLed {after:g} s into {count:,} workflows, restarted at once",
        figures={"seconds": round(batch.last_end - began, 2)},
        notes=[
            f"{ended_before:,} workflows had ended at the kill",
            "messages the killed engine held unacked come back after the consumer's ack_wait",
        ],
    )
