"""``jetwork server --auth``: jetwork runs with its least-privilege roles, end to end.

The real entry point starts the embedded server with the roles; a shell worker runs with
``worker.env``, the CLI with ``client.env``, an HTTP worker through the gateway (which connects
as ``gateway``). Everything a user does works, and nats-server reports no permission violation:
the roles are the ones jetwork actually runs with, not a sketch.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.eventually import assert_eventually
from tests.integration.test_newcomer_path import REPO, Done, jetwork

pytestmark = pytest.mark.slow


@dataclass
class Secured:
    data_dir: Path
    http_url: str

    def env(self, role: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
        for line in (self.data_dir / "auth" / f"{role}.env").read_text().splitlines():
            name, _, value = line.partition("=")
            env[name] = value
        return env

    async def jetwork(self, role: str, *args: str, timeout: float = 60) -> Done:
        proc = await asyncio.create_subprocess_exec(
            jetwork(), *args, cwd=REPO, env=self.env(role),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return Done(proc.returncode, out.decode(), err.decode())

    def violations(self) -> list[str]:
        log = (self.data_dir / "nats" / "nats-server.log").read_text()
        return [line for line in log.splitlines() if "Violation" in line]


async def _stop(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return err


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    data_dir = tmp_path / "jw"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    server = await asyncio.create_subprocess_exec(
        jetwork(), "server", "--auth", "--port", "0", "--data-dir", str(data_dir),
        "--http", "127.0.0.1:0", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    worker: asyncio.subprocess.Process | None = None
    try:
        assert server.stderr is not None
        lines: list[str] = []
        while not any(line.startswith("HTTP gateway on") for line in lines):
            line = (await asyncio.wait_for(server.stderr.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        http_url = next(x for x in lines if x.startswith("HTTP gateway on")).split()[3]
        secured = Secured(data_dir, http_url)
        assert (data_dir / "auth" / "worker.env").stat().st_mode & 0o077 == 0  # owner only
        worker = await asyncio.create_subprocess_exec(
            jetwork(), "worker", "--labels", "linux", cwd=REPO, env=secured.env("worker"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

        async def worker_present() -> bool:  # and its signal handlers installed
            workers = await secured.jetwork("client", "workers", "--json")
            # Its own entry: the server's http step worker is listed from the start.
            listed = json.loads(workers.out)["workers"] if workers.code == 0 else []
            return any("linux" in entry["labels"] for entry in listed)

        await assert_eventually(worker_present, timeout=30, interval=0.2)
        yield secured
    finally:
        try:  # the server is stopped even when the worker's check fails (no orphan left)
            if worker is not None:
                worker_err = await _stop(worker)
                assert worker.returncode == 0, worker_err.decode()[-2000:]
        finally:
            server_err = await _stop(server)
            assert server.returncode == 0, server_err.decode()[-2000:]


async def test_workers_and_clients_run_with_their_roles_and_nothing_is_refused(
    secured: Secured,
) -> None:
    waited = await secured.jetwork("client", "run", "examples/diamond.yaml", "--wait")
    assert waited.code == 0, waited.out + waited.err
    started = await secured.jetwork("client", "run", "examples/diamond.yaml")
    workflow_id = started.out.strip()
    assert started.code == 0 and workflow_id.startswith("wf-"), started.err

    async def succeeded() -> bool:
        status = await secured.jetwork("client", "status", workflow_id, "--json")
        return bool(json.loads(status.out)["status"] == "succeeded")

    await assert_eventually(succeeded, timeout=60, interval=0.2)
    for args in (["history", workflow_id], ["logs", workflow_id, "flaky"], ["list"],
                 ["workers"], ["rerun", workflow_id, "--from", "report"]):  # fmt: skip
        done = await secured.jetwork("client", *args)
        assert done.code == 0, f"{args}: {done.out}{done.err}"

    async def listed() -> bool:  # projected by the server's projector process, as its role
        rows = json.loads((await secured.jetwork("client", "list", "--json")).out)
        return workflow_id in [row["workflow_id"] for row in rows]

    await assert_eventually(listed, timeout=60, interval=0.2)
    assert secured.violations() == []


async def test_an_http_worker_runs_a_job_through_the_gateways_role(secured: Secured) -> None:
    workflow = {"name": "via-http", "jobs": {"only": {"run": "echo hi", "labels": ["http-only"]}}}
    async with httpx.AsyncClient(base_url=secured.http_url, timeout=30) as http:
        response = await http.post("/api/workflows", json={"workflow": workflow})
        assert response.status_code == 201, response.text
        wf = response.json()["workflow_id"]

        async def claimed() -> dict[str, dict[str, object]] | None:
            body = {"worker_id": "w-http", "labels": ["http-only"], "lease_ttl_secs": 30}
            answer = (await http.post("/api/jobs/claim", json=body)).json()
            return answer or None

        claim = await assert_eventually(claimed, timeout=30)
        lease_id = claim["lease"]["lease_id"]
        beat = await http.post(f"/api/jobs/{lease_id}/heartbeat")
        assert beat.status_code == 200, beat.text
        done = await http.post(f"/api/jobs/{lease_id}/complete", json={"outputs": {"k": "v"}})
        assert done.status_code == 200, done.text

        async def ended() -> bool:
            view = (await http.get(f"/api/workflows/{wf}")).json()
            return bool(view["status"] == "succeeded")

        await assert_eventually(ended, timeout=30)
    assert secured.violations() == []


async def test_an_http_step_runs_in_the_server_s_own_worker_role(secured: Secured) -> None:
    from tests.http_target import Target, serving

    with serving(Target()) as target:
        workflow = {"name": "via-step", "jobs": {"call": {"http": {"url": f"{target.url}/ok"}}}}
        async with httpx.AsyncClient(base_url=secured.http_url, timeout=30) as http:
            response = await http.post("/api/workflows", json={"workflow": workflow})
            assert response.status_code == 201, response.text
            wf = response.json()["workflow_id"]

            async def ended() -> dict[str, object] | None:
                view: dict[str, object] = (await http.get(f"/api/workflows/{wf}")).json()
                return view if view.get("status") in ("succeeded", "failed") else None

            view = await assert_eventually(ended, timeout=30)
    assert view["status"] == "succeeded", view
    assert target.hits["/ok"] == 1
    assert secured.violations() == []
