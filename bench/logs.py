"""L: job logs end to end. One shell job prints many short lines; the rate is lines per second
from the workflow's start until the last line has been read back through the client (what
``jetwork logs`` uses), every line checked present and in order.

Two writers: ``seq`` (block writes through stdio, as most tools write to a pipe) and a shell loop
that writes line by line with a stderr line every 100 lines (each write waits for the worker to
read the previous one on its stream: the price of keeping stdout and stderr in write order, see
``sdk/worker/executors/pipes.py``).
"""

from __future__ import annotations

import time

from bench.common import Deployment, run_batch
from bench.report import Result
from sdk.client import Client


def seq_job(lines: int) -> dict[str, object]:
    return {"name": "logs-seq", "jobs": {"j": {"run": f"seq 1 {lines}"}}}


def loop_job(lines: int) -> dict[str, object]:
    script = (
        f'i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo "out $i"; '
        'if [ $((i % 100)) -eq 0 ]; then echo "err $i" >&2; fi; done'
    )
    return {"name": "logs-loop", "jobs": {"j": {"run": script}}}


def expected_seq(lines: int) -> list[tuple[str, str]]:
    return [("stdout", str(i)) for i in range(1, lines + 1)]


def expected_loop(lines: int) -> list[tuple[str, str]]:
    found = []
    for i in range(1, lines + 1):
        found.append(("stdout", f"out {i}"))
        if i % 100 == 0:
            found.append(("stderr", f"err {i}"))
    return found


async def log_rate(dep: Deployment, lines: int, *, writer: str) -> Result:
    definition = seq_job(lines) if writer == "seq" else loop_job(lines)
    expected = expected_seq(lines) if writer == "seq" else expected_loop(lines)
    began = time.time()
    batch, _ = await run_batch(dep, definition, 1, what=f"logs-{writer}")
    workflow_id = batch.ids[0]
    ran = batch.ended[workflow_id][1] - began
    read_from = time.time()
    client = Client(dep.nc)
    read = [(line.stream, line.line) async for line in client.logs(workflow_id, "j")]
    done = time.time()
    if read != expected:
        missing = len(expected) - len(read)
        wrong = sum(1 for got, want in zip(read, expected, strict=False) if got != want)
        raise AssertionError(f"log of {workflow_id}: {missing} lines missing, {wrong} out of place")
    total = len(expected)
    variant = (
        f"{total:,} lines, `seq` (block writes)"
        if writer == "seq"
        else f"{total:,} lines, shell loop writing line by line, stderr every 100th"
    )
    return Result(
        "L",
        variant,
        figures={
            "lines/s": round(total / (done - began)),
            "job lines/s": round(total / ran),
            "read lines/s": round(total / (done - read_from)),
            "seconds": round(done - began, 2),
        },
        notes=[
            "lines/s: workflow start to the last line read back through the client, all in order; "
            "job lines/s: start to the workflow's end (its log is stored before the job's end)"
        ],
    )
