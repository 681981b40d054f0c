"""G: HTTP workers through the gateway beside the NATS-native worker, in the same run.

No engine, as in W: the driver queues no-op jobs (``JobQueued`` appended to each job actor: the
event is the dispatch, as when the engine queues attempt 1) and workers drain them.

- native: one ``jetwork`` worker process with ``--slots`` (8) no-op Python handler slots;
- HTTP: the gateway (``python -m bench.roles gateway``, its own process) and ``--slots`` plain
  HTTP workers (``bench.http_workers``: one process, one keep-alive connection each) claiming and
  completing no-op jobs (claim, then complete: two requests per job).

Reported: jobs/s of each, the HTTP claim latency (request to answer, claims that got a job)
p50/p99, CPU per 1,000 jobs by process kind (the gateway's is its CPU per job), and the
framework's own ceiling: ``GET /healthz`` requests/s over the same number of connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from bench.common import Deployment, WorkerSpec, deployment
from bench.report import Result, median_of, percentiles
from bench.stack import ROOT, Role
from bench.worker_only import drain
from events.catalog import JobSpec
from sdk.embedded_server import free_port

NOOP_RUN = JobSpec(run="true")  # HTTP workers do not run it: claim, then complete at once


async def compare(*, sync: str, jobs: int, slots: int, repeats: int) -> list[Result]:
    results: list[Result] = []
    async with deployment(
        sync_interval=sync, workers=[WorkerSpec("w1", slots)], engine=False, projector=False
    ) as dep:
        await drain(dep, 1_000, variant="warm-up")
        runs = [
            await drain(
                dep,
                jobs,
                variant=f"native worker, 1 process x {slots} slots, {jobs:,} no-op jobs",
                scenario="G",
            )
            for _ in range(repeats)
        ]
        results.append(median_of(runs, "jobs/s"))
    async with deployment(sync_interval=sync, workers=[], engine=False, projector=False) as dep:
        port = free_port()
        await dep.stack.spawn("gateway", "gateway", "--http-port", str(port))
        url = f"http://127.0.0.1:{port}"
        results.append(await _health(url, slots))
        stats_file = dep.stack.dir / "http-workers.json"
        workers = await _spawn_http_workers(dep, url, slots, stats_file)
        await drain(dep, 1_000, variant="warm-up", spec=NOOP_RUN)
        runs = []
        for _ in range(repeats):
            await _stats(workers, stats_file)  # forget the warm-up's (or the last run's)
            began: list[float] = []
            result = await drain(
                dep,
                jobs,
                variant=f"gateway, {slots} plain HTTP workers, {jobs:,} no-op jobs",
                spec=NOOP_RUN,
                scenario="G",
                began_at=began,
            )
            seen = await _stats(workers, stats_file)
            # Claims sent before the dispatches began waited for them (a long-poll): not counted.
            latencies = [took for sent, took in seen["latencies"] if sent >= began[0]]
            result.latency_ms["claim"] = percentiles(latencies)
            result.notes.append(
                f"claims without a job: {seen['empty']}, HTTP errors: {seen['errors']}"
            )
            runs.append(result)
        http = median_of(runs, "jobs/s")
        native = results[0].figures["jobs/s"]
        http.notes.append(f"{http.figures['jobs/s'] / native:.0%} of the native worker's jobs/s")
        cpu = http.cpu_per_1k_jobs
        http.notes.append(
            "CPU per job: gateway {:.2f} ms, nats-server {:.2f} ms, HTTP workers {:.2f} ms".format(
                cpu.get("gateway", 0.0), cpu.get("nats-server", 0.0), cpu.get("http-workers", 0.0)
            )
        )
        results.append(http)
    return results


async def _health(url: str, connections: int) -> Result:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.http_workers", "health", "--url", url,
        "--workers", str(connections), "--seconds", "3",
        stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    figures = orjson.loads(out)
    return Result(
        "G",
        f"GET /healthz (Starlette on uvicorn + httptools), {connections} connections, 3 s",
        figures={"requests/s": round(figures["per_second"], 1)},
    )


async def _spawn_http_workers(dep: Deployment, url: str, count: int, stats: Path) -> Role:
    log = dep.stack.dir / "http-workers.log"
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.http_workers", "jobs", "--url", url,
            "--workers", str(count), "--stats", str(stats),
            stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT,
        )  # fmt: skip
    role = Role("http-workers", "http-workers", process, log)
    dep.stack.roles.append(role)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if line.strip() != b"ready":
        raise RuntimeError(f"the HTTP workers did not start: see {log}")
    return role


async def _stats(role: Role, path: Path) -> dict[str, Any]:
    _forget(path)
    role.process.send_signal(signal.SIGUSR1)
    for _ in range(500):
        found = _read(path)
        if found is not None:
            return found
        await asyncio.sleep(0.01)
    raise TimeoutError("the HTTP workers wrote no statistics")


def _forget(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    return data
