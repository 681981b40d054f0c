"""F: one ``for_each`` over 10,000 items, no-op instances: the engine's time, CPU and memory.

The items are the workflow's input, so the list is evaluated by the workflow actor when the job
becomes ready (the dynamic path); each instance is a job actor of its own, queued by the engine
from the fan-out's tally. ``python -m bench fanout_dynamic`` (not part of ``all``: ~1 minute).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from actors.definitions import parse_workflow
from actors.engine.reactions import Start, react
from actors.workflow import WorkflowState
from bench.common import Deployment, Window, run_batch
from bench.report import Result
from events.base import RecordedEvent
from events.catalog import JobStatus, JobSucceeded
from events.requests import StartRequest


def for_each(count: int, *, max_parallel: int | None = None) -> dict[str, Any]:
    """``list`` → ``each`` (one no-op instance per item) → ``after``."""
    each: dict[str, Any] = {
        "needs": ["list"],
        "for_each": "${{ inputs.items }}",
        "uses": "noop",
    }
    if max_parallel is not None:
        each["max_parallel"] = max_parallel
    return {
        "name": f"for-each-{count}",
        "inputs": {"items": {"default": list(range(count))}},
        "jobs": {
            "list": {"uses": "noop"},
            "each": each,
            "after": {"needs": ["each"], "uses": "noop"},
        },
    }


async def dynamic(dep: Deployment, count: int, *, max_parallel: int | None = None) -> Result:
    (engine,) = dep.stack.by_kind("engine")
    rss_before = engine.sample().rss
    window = Window(dep).open()
    batch, _ = await run_batch(dep, for_each(count, max_parallel=max_parallel), 1, what="fan")
    window.close()
    memory = engine.sample()
    seconds = batch.last_end - batch.first_submit
    cpu = {
        name: window.after[name].cpu - window.before[name].cpu
        for name in window.after
        if name in window.before
    }
    limit = f", max_parallel {max_parallel:,}" if max_parallel else ""
    result = Result(
        "F",
        f"for_each over {count:,} items, no-op instances{limit}",
        figures={
            "seconds": round(seconds, 2),
            "instances/s": round(count / seconds, 1),
            "engine CPU-s": round(cpu.get(engine.name, 0.0), 2),
            "engine RSS before (MB)": round(rss_before / 2**20, 1),
            "engine RSS after (MB)": round(memory.rss / 2**20, 1),
            "engine peak RSS (MB)": round(memory.hwm / 2**20, 1),
        },
    )
    window.fill(result, count + 2)
    outcomes = batch.outcomes()
    if set(outcomes) != {"WorkflowSucceeded"}:
        result.notes.append(f"outcomes: {outcomes}")
    return result


def actor_only(count: int, *, batch: int) -> Result:
    """The workflow actor alone, in this process: ``count`` instances' results folded and
    decided ``batch`` at a time, as the engine reacts (``reactions.react``). Time per instance
    that grows with ``count`` is work proportional to the fan-out repeated per event."""
    raw = for_each(count)
    definition = parse_workflow(raw)
    now = datetime.now(UTC)
    start = Start(StartRequest(workflow_id="wf", definition=raw), definition)
    state = react(WorkflowState(workflow_id="wf"), [start], now).state
    results = []
    for index in range(count):
        event = JobSucceeded(
            workflow_id="wf", job=f"each-{index}", attempt=1, epoch=1, ended_at=now
        )
        results.append(RecordedEvent(1_000 + index, event.subject(), now, event))
    listed = JobSucceeded(workflow_id="wf", job="list", attempt=1, epoch=1, ended_at=now)
    state = react(state, [RecordedEvent(999, listed.subject(), now, listed)], now).state
    began = time.perf_counter()
    for first in range(0, count, batch):
        state = react(state, results[first : first + batch], now).state
    seconds = time.perf_counter() - began
    assert state.job("each").status is JobStatus.SUCCEEDED
    return Result(
        "F",
        f"the actor alone: {count:,} instances' results, {batch} per reaction",
        figures={"seconds": round(seconds, 2), "µs per instance": round(seconds / count * 1e6)},
    )
