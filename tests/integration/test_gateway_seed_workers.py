"""The Python, TypeScript (as JavaScript) and Go workers printed in workflow-graph's guide run
unchanged against the gateway: labels, outputs from upstream, a failure that retries, a
permanent failure, logs visible with ``jetwork logs``, the worker in ``jetwork workers``.

The Python and Go workers talk to ``http://localhost:3000`` (hard-coded), so their tests hold
that port (``seed_port``); the JavaScript one reads ``SERVER_URL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from events.store import EventStore
from gateway.settings import GatewaySettings
from tests.gateway_harness import (
    SEED_PORT,
    claim_eventually,
    finished,
    running_engine,
    running_gateway,
    seed_port,
    start,
    types_of,
)

SEEDS = Path(__file__).resolve().parent.parent / "seed_workers"


def workflows(label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    good = {
        "name": f"seed-{label}",
        "jobs": {
            # Done by the test itself (the seed's workers report no outputs): its output
            # reaches the seed worker's command.
            "make": {"run": "make", "labels": ["maker"]},
            "greet": {
                "needs": ["make"],
                "labels": [label],
                "run": f'echo "hello from {label}, version ${{{{ needs.make.outputs.version }}}}"',
            },
            "flaky": {
                "labels": [label],
                "run": "if [ -f flaky.marker ]; then echo recovered; "
                "else touch flaky.marker; echo first try fails >&2; exit 1; fi",
                "retry": {"max_attempts": 2},
            },
        },
    }
    broken = {
        "name": f"seed-{label}-broken",
        "jobs": {
            "broken": {
                "labels": [label],
                "run": "echo cannot work >&2; exit 3",
                "retry": {"max_attempts": 2},
            }
        },
    }
    return good, broken


async def jetwork(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sdk.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def run_seed_worker(
    command: Sequence[str],
    *,
    label: str,
    prefix: str,
    gateway_url: str,
    nats_url: str,
    nc: NATS,
    cwd: Path,
    logs_pushed: bool = True,
) -> None:
    log = (cwd / "worker.log").open("wb")
    env = {**os.environ, "SERVER_URL": gateway_url, "WORKER_LABELS": label}
    worker = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    store = EventStore(nc)
    try:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as http:
            good, broken = workflows(label)
            wf = await start(http, good)
            bad = await start(http, broken)
            make = await claim_eventually(http, "test-maker", ["maker"])
            done = await http.post(
                f"/api/jobs/{make['lease']['lease_id']}/complete",
                json={"outputs": {"version": "1.2.3"}},
            )
            assert done.status_code == 200, done.text
            history = await finished(store, wf, timeout=60)
            failed = await finished(store, bad, timeout=60)
        detail = (cwd / "worker.log").read_text()
        assert types_of(history)[-1] == "WorkflowSucceeded", detail
        assert types_of(history, "flaky") == [
            "JobQueued", "JobStarted", "JobFailed", "JobRetryScheduled",
            "JobQueued", "JobStarted", "JobSucceeded",
        ]  # fmt: skip
        status = json.loads(await jetwork("status", wf, "--json", "--nats", nats_url))
        assert status["jobs"]["greet"]["worker_id"].startswith(prefix)
        assert status["jobs"]["flaky"]["attempts"] == 2
        if logs_pushed:
            greeting = await jetwork("logs", wf, "greet", "--nats", nats_url)
            assert greeting == f"── attempt 1 ──\nhello from {label}, version 1.2.3\n"
        assert types_of(failed)[-1] == "WorkflowFailed"
        assert types_of(failed, "broken").count("JobFailed") == 2  # retried, then permanent
        end = json.loads(await jetwork("status", bad, "--json", "--nats", nats_url))
        assert "cannot work" in end["jobs"]["broken"]["error"]
        listed = json.loads(await jetwork("workers", "--json", "--nats", nats_url))["workers"]
        assert [w["labels"] for w in listed if w["worker_id"].startswith(prefix)] == [[label]]
    finally:
        worker.terminate()
        await worker.wait()
        log.close()


@pytest.fixture
async def on_port_3000(clean_nats: NATS, nats_url: str) -> AsyncIterator[str]:
    with seed_port():
        settings = GatewaySettings(host="127.0.0.1", port=SEED_PORT)
        async with running_engine(clean_nats), running_gateway(nats_url, settings) as gateway:
            yield gateway.url


async def test_the_seed_python_worker_runs_unchanged(
    clean_nats: NATS, nats_url: str, on_port_3000: str, tmp_path: Path
) -> None:
    await run_seed_worker(
        [sys.executable, str(SEEDS / "worker.py")],
        label="python",
        prefix="py-",
        gateway_url=on_port_3000,
        nats_url=nats_url,
        nc=clean_nats,
        cwd=tmp_path,
    )


def require(tool: str, install: str) -> None:
    """Fail (never skip: a skipped test proves nothing) when a tool the test runs is missing."""
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: {install} (.ci/run installs it)")


async def test_the_seed_typescript_worker_runs_unchanged_as_javascript(
    clean_nats: NATS, nats_url: str, tmp_path: Path
) -> None:
    require("node", "install Node.js 18 or later")
    async with running_engine(clean_nats), running_gateway(nats_url) as gateway:
        await run_seed_worker(
            ["node", str(SEEDS / "worker.mjs")],
            label="node",
            prefix="node-",
            gateway_url=gateway.url,
            nats_url=nats_url,
            nc=clean_nats,
            cwd=tmp_path,
        )


async def test_the_seed_go_worker_runs_unchanged(
    clean_nats: NATS, nats_url: str, on_port_3000: str, tmp_path: Path
) -> None:
    require("go", "apt-get install golang-go")
    binary = tmp_path / "seed-go-worker"
    env = {**os.environ, "GOCACHE": str(tmp_path / "gocache"), "GOPATH": str(tmp_path / "gopath")}
    build = await asyncio.create_subprocess_exec(
        "go", "build", "-o", str(binary), str(SEEDS / "worker.go"),
        cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await build.communicate()
    assert build.returncode == 0, err.decode()
    await run_seed_worker(
        [str(binary)],
        label="go",
        prefix="go-",
        gateway_url=on_port_3000,
        nats_url=nats_url,
        nc=clean_nats,
        cwd=tmp_path,
        logs_pushed=False,  # it keeps its output to itself
    )
