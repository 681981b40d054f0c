"""Prometheus metrics of the real processes, scraped over HTTP as Prometheus would.

``jetwork server --metrics`` (engine, projector, gateway, and the sampler of queue depth and
projector lag) and ``jetwork worker --metrics`` run ``examples/diamond.yaml`` (6 jobs, one retried
once); every figure a dashboard relies on is read back from ``/metrics`` and checked against what
the run did. The gateway serves the same registry at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.eventually import assert_eventually
from tests.integration.test_newcomer_path import REPO, Done, jetwork

pytestmark = pytest.mark.slow
_URL = re.compile(r"(http://[0-9.]+:[0-9]+)")


@dataclass
class Process:
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def wait_for_line(self, needle: str, timeout: float = 30) -> str:
        assert self.proc.stderr is not None
        while not any(needle in line for line in self.lines):
            line = (await asyncio.wait_for(self.proc.stderr.readline(), timeout)).decode()
            assert line, "".join(self.lines)
            self.lines.append(line)
        return next(line for line in self.lines if needle in line)

    async def stop(self) -> str:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(self.proc.communicate(), 30)
        return "".join(self.lines) + err.decode()


async def spawn(*args: str, env: dict[str, str]) -> Process:
    proc = await asyncio.create_subprocess_exec(
        jetwork(), *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Process(proc)


async def run(*args: str, env: dict[str, str]) -> Done:
    process = await spawn(*args, env=env)
    out, err = await asyncio.wait_for(process.proc.communicate(), 60)
    assert process.proc.returncode is not None
    return Done(process.proc.returncode, out.decode(), err.decode())


def url_in(line: str) -> str:
    found = _URL.search(line)
    assert found, line
    return found.group(1)


@dataclass
class Deployment:
    env: dict[str, str]
    server_metrics: str
    worker_metrics: str
    gateway: str


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    env["JETWORK_METRICS_INTERVAL"] = "0.2"
    server = await spawn(
        "server", "--port", "0", "--data-dir", str(tmp_path / "jw"), "--http", "127.0.0.1:0",
        "--metrics", "127.0.0.1:0", env=env,
    )  # fmt: skip
    worker: Process | None = None
    try:
        server_metrics = url_in(await server.wait_for_line("metrics on"))
        await server.wait_for_line("ready")
        gateway = url_in(await server.wait_for_line("HTTP gateway on"))
        export = await server.wait_for_line("export JETWORK_NATS_URL=")
        env["JETWORK_NATS_URL"] = export.split("export JETWORK_NATS_URL=")[1].split()[0]
        worker = await spawn("worker", "--labels", "linux", "--metrics", "127.0.0.1:0", env=env)
        worker_metrics = url_in(await worker.wait_for_line("metrics on"))
        yield Deployment(env, server_metrics, worker_metrics, gateway)
    finally:
        try:  # the server is stopped even when the worker's check fails
            if worker is not None:
                worker_log = await worker.stop()
                assert worker.proc.returncode == 0, worker_log[-2000:]
        finally:
            server_log = await server.stop()
            assert server.proc.returncode == 0, server_log[-2000:]
        assert "Traceback" not in server_log


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``url`` by (name, labels)."""
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, have), value in samples.items() if n == name and wanted <= have)


async def test_the_server_and_the_worker_expose_what_the_run_did(deployment: Deployment) -> None:
    done = await run("run", "examples/diamond.yaml", "--wait", env=deployment.env)
    assert done.code == 0, done.out + done.err

    server = await scrape(deployment.server_metrics + "/metrics")
    assert total(server, "jetwork_workflows_started_total", workflow="diamond") == 1
    assert total(server, "jetwork_workflows_ended_total", workflow="diamond",
                 status="succeeded") == 1  # fmt: skip
    assert total(server, "jetwork_jobs_queued_total") == 7  # six jobs, one of them twice
    assert total(server, "jetwork_engine_batch_seconds_count") >= 1
    assert total(server, "jetwork_engine_partitions") == 16

    async def worker_counted_everything() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        samples = await scrape(deployment.worker_metrics + "/metrics")
        assert total(samples, "jetwork_jobs_ended_total") == 7, samples
        return samples

    worker = await assert_eventually(worker_counted_everything, timeout=10)
    shell = {"handler": "shell"}
    assert total(worker, "jetwork_jobs_started_total", **shell) == 7
    assert total(worker, "jetwork_jobs_ended_total", outcome="succeeded", **shell) == 6
    assert total(worker, "jetwork_jobs_ended_total", outcome="failed", **shell) == 1
    assert total(worker, "jetwork_job_retries_total", **shell) == 1
    assert total(worker, "jetwork_job_duration_seconds_count", **shell) == 7
    assert total(worker, "jetwork_dispatch_latency_seconds_count", **shell) == 7
    # The retry waited its 200 ms backoff before it could be claimed: not counted as latency.
    assert total(worker, "jetwork_dispatch_latency_seconds_sum", **shell) < 7 * 0.2
    assert total(worker, "jetwork_worker_slots") >= 1
    assert total(worker, "jetwork_worker_slots_busy") == 0
    assert total(worker, "jetwork_lease_takeovers_total") == 0

    async def sampled() -> bool:
        samples = await scrape(deployment.server_metrics + "/metrics")
        assert total(samples, "jetwork_projector_lag_events") == 0, "projector lag"
        depths = [key for key in samples if key[0] == "jetwork_queue_depth"]
        assert depths, "no queue depth sampled"
        assert all(samples[key] == 0 for key in depths), depths
        return True

    await assert_eventually(sampled, timeout=20)

    via_gateway = await scrape(deployment.gateway + "/metrics")
    assert total(via_gateway, "jetwork_workflows_started_total", workflow="diamond") == 1


@pytest.mark.parametrize("command", [("server", "--no-http"), ("worker",)])
async def test_a_bad_metrics_address_is_one_clear_error(command: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    env["JETWORK_NATS_URL"] = "nats://127.0.0.1:1"  # never reached: the address is refused first
    done = await run(*command, "--metrics", "nowhere", env=env)
    assert done.code == 1, done.out + done.err
    assert "error: --metrics='nowhere': expected HOST:PORT" in done.err
    assert "Traceback" not in done.err


async def test_the_gateway_counts_its_http_workers_attempts(deployment: Deployment) -> None:
    workflow = {"name": "via-http", "jobs": {
        "ok": {"run": "true", "labels": ["http-metrics"]},
        "bad": {"run": "false", "labels": ["http-metrics"], "needs": ["ok"]},
    }}  # fmt: skip
    async with httpx.AsyncClient(base_url=deployment.gateway, timeout=30) as http:
        started = await http.post("/api/workflows", json={"workflow": workflow})
        assert started.status_code == 201, started.text
        body = {"worker_id": "w-http", "labels": ["http-metrics"], "lease_ttl_secs": 30}

        async def claimed() -> dict[str, dict[str, str]] | None:
            answer: dict[str, dict[str, str]] | None = (
                await http.post("/api/jobs/claim", json=body)
            ).json()
            return answer or None

        first = await assert_eventually(claimed, timeout=20)
        done = await http.post(f"/api/jobs/{first['lease']['lease_id']}/complete", json={})
        assert done.status_code == 200, done.text
        second = await assert_eventually(claimed, timeout=20)
        failed = await http.post(f"/api/jobs/{second['lease']['lease_id']}/fail",
                                 json={"error": "no", "retryable": False})  # fmt: skip
        assert failed.status_code == 200, failed.text
    samples = await scrape(deployment.gateway + "/metrics")
    shell = {"handler": "shell"}
    assert total(samples, "jetwork_jobs_started_total", **shell) == 2
    assert total(samples, "jetwork_jobs_ended_total", outcome="succeeded", **shell) == 1
    assert total(samples, "jetwork_jobs_ended_total", outcome="failed", **shell) == 1
    assert total(samples, "jetwork_dispatch_latency_seconds_count", **shell) == 2
    assert total(samples, "jetwork_job_duration_seconds_count", **shell) == 2
