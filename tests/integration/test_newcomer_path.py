"""The README's newcomer path, command by command, with the real processes and entry point.

``jetwork server`` (embedded nats-server, engine, projector), ``jetwork worker --labels linux``,
then ``jetwork run examples/diamond.yaml --wait``, ``id=$(jetwork run ...)``, ``status``,
``history``, ``logs ID flaky`` and ``list``, each as a user types it (``JETWORK_NATS_URL`` set as
the server says). Only the port (0: any free one) and the data directory differ.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.eventually import assert_eventually

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def jetwork() -> str:
    found = Path(sys.executable).parent / "jetwork"
    return str(found) if found.exists() else shutil.which("jetwork") or "jetwork"


@dataclass
class Done:
    code: int
    out: str
    err: str


@dataclass
class Session:
    env: dict[str, str]

    async def jetwork(self, *args: str, timeout: float = 60) -> Done:
        proc = await asyncio.create_subprocess_exec(
            jetwork(), *args, cwd=REPO, env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Done(proc.returncode, out.decode(), err.decode())


async def _stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return err


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[Session]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    server = await asyncio.create_subprocess_exec(
        jetwork(), "server", "--port", "0", "--data-dir", str(tmp_path / "jw"), "--http",
        "127.0.0.1:0", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    worker: asyncio.subprocess.Process | None = None
    try:
        assert server.stderr is not None
        lines: list[str] = []
        while not any(line.startswith("ready") for line in lines):
            line = (await asyncio.wait_for(server.stderr.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        export = next(line for line in lines if "export JETWORK_NATS_URL=" in line)
        env["JETWORK_NATS_URL"] = export.split("export JETWORK_NATS_URL=")[1].split()[0]
        worker = await asyncio.create_subprocess_exec(
            jetwork(), "worker", "--labels", "linux", cwd=REPO, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        yield Session(env)
    finally:
        try:  # the server is stopped even when the worker's check fails (no orphan left)
            if worker is not None:
                worker_err = await _stop(worker)
                assert worker.returncode == 0, worker_err.decode()[-2000:]
        finally:
            server_err = await _stop(server)
            assert server.returncode == 0, server_err.decode()[-2000:]
            assert b"Traceback" not in server_err


async def test_the_readme_newcomer_path_works_as_written(session: Session) -> None:
    waited = await session.jetwork("run", "examples/diamond.yaml", "--wait")
    assert waited.code == 0, waited.out + waited.err
    assert "succeeded" in waited.out

    started = await session.jetwork("run", "examples/diamond.yaml")
    assert started.code == 0, started.err
    workflow_id = started.out.strip()
    assert workflow_id.startswith("wf-") and "\n" not in workflow_id  # the id alone

    async def succeeded() -> dict[str, object]:
        status = await session.jetwork("status", workflow_id, "--json")
        view: dict[str, object] = json.loads(status.out)
        return view if view["status"] == "succeeded" else {}

    view = await assert_eventually(succeeded, timeout=60, interval=0.2)
    jobs = view["jobs"]
    assert isinstance(jobs, dict)
    assert jobs["flaky"]["attempts"] == 2
    assert jobs["join"]["outputs"] == {"total": "13"}

    history = await session.jetwork("history", workflow_id)
    assert history.code == 0, history.err
    assert "WorkflowStarted" in history.out and "WorkflowSucceeded" in history.out
    assert "JobRetryScheduled" in history.out

    logs = await session.jetwork("logs", workflow_id, "flaky")
    assert logs.code == 0, logs.err
    out = logs.out.splitlines()
    assert out[0] == "── attempt 1 ──" and "── attempt 2 ──" in out
    assert any(x.endswith("[stderr] first attempt fails on purpose") for x in out)  # marked

    async def listed() -> bool:
        rows = json.loads((await session.jetwork("list", "--json")).out)
        return workflow_id in {row["workflow_id"] for row in rows}

    await assert_eventually(listed, timeout=30, interval=0.2)
