"""Nothing waits silently, on a real server with the real engine, dispatcher, workers, projector.

A job whose labels no live worker offers says so in ``status``, ``list``, ``workers``, the
client's views and a ``wait`` that times out; ``dispatch_timeout`` fails it; a timed-out
workflow's final view shows its unfinished jobs cancelled.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine, EngineSettings
from events.errors import WorkflowNotFound
from events.store import EventStore
from projections.projector import Projector, ProjectorSettings
from projections.reader import Views
from sdk.cli._common import configure_logging
from sdk.client import Client
from sdk.errors import WaitTimeout
from sdk.worker import Worker
from tests.eventually import assert_eventually
from tests.integration.test_cli import invoke, ok
from tests.jobs_harness import fast_config

FAST_PROJECTOR = ProjectorSettings(poll_interval=0.1, generation_check=0.1)


@pytest.fixture
async def server(clean_nats: NATS) -> AsyncIterator[NATS]:
    """The engine and the projector, as ``jetwork server`` runs them (no worker)."""
    # Logs to stderr: CliRunner captures stdout process-wide, and the in-process workers log
    # while the CLI runs.
    configure_logging()
    engine = Engine(clean_nats, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    projector = Projector(clean_nats, settings=FAST_PROJECTOR)
    await engine.start()
    await projector.start()
    try:
        yield clean_nats
    finally:
        await projector.stop()
        await engine.stop()


def gpu_workflow(tmp_path: Path, **extra: str) -> Path:
    path = tmp_path / "train.yaml"
    lines = ["name: train"]
    lines += [f"{key}: {value}" for key, value in extra.items() if key == "timeout"]
    lines += ["jobs:", "  prepare: {run: 'true', labels: [linux]}"]
    job_extra = "".join(f", {k}: {v}" for k, v in extra.items() if k == "dispatch_timeout")
    lines += [f"  train: {{needs: [prepare], run: 'true', labels: [gpu]{job_extra}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_job_no_live_worker_serves_says_what_it_waits_for(
    server: NATS, nats_url: str, tmp_path: Path
) -> None:
    client = Client(server)
    linux = Worker(fast_config(nats_url, worker_id="w-linux", labels=frozenset({"linux"})))
    gpu = Worker(fast_config(nats_url, worker_id="w-gpu", labels=frozenset({"gpu"})))
    await linux.start()
    try:
        handle = await client.start(gpu_workflow(tmp_path))

        async def train_queued() -> bool:
            try:
                view = await client.status(handle.workflow_id)
            except WorkflowNotFound:  # its start waits for the engine
                return False
            return view.jobs["train"].status == "queued"

        await assert_eventually(train_queued, timeout=15)
        view = await client.status(handle.workflow_id)
        waiting = view.jobs["train"].waiting_for
        assert waiting is not None
        assert (waiting.labels, waiting.handler, waiting.live_workers) == (("gpu",), None, 0)

        with pytest.raises(WaitTimeout) as caught:
            await handle.wait(timeout=0.5)
        assert "job train waits for a worker offering label gpu: no live worker does" in str(
            caught.value
        )

        status = ok(await invoke("status", handle.workflow_id, "--nats", nats_url)).stdout
        assert "waits for a worker offering label gpu: none is live" in status
        found = await client.workers()
        assert [(ls.token, ls.labels, ls.waiting) for ls in found.unserved] == [
            ("gpu", ("gpu",), 1)
        ]
        workers = json.loads(ok(await invoke("workers", "--json", "--nats", nats_url)).stdout)
        assert workers["unserved"] == [
            {
                "token": "gpu",
                "labels": ["gpu"],
                "handler": None,
                "waiting": 1,
                "namespace": "default",
            }
        ]
        assert "label gpu" in ok(await invoke("workers", "--nats", nats_url)).stdout

        await Views(server).wait_caught_up()
        [row] = await client.list()
        assert [(need.labels, need.live_workers) for need in row.waiting_for] == [(("gpu",), 0)]
        listed = ok(await invoke("list", "--nats", nats_url)).stdout
        assert "(no live worker offers label gpu)" in " ".join(re.sub("[│┃]", " ", listed).split())

        waited = await invoke(
            "run", str(gpu_workflow(tmp_path)), "--wait", "--timeout", "3", "--nats", nats_url
        )
        assert waited.exit_code == 1
        assert "job train waits for a worker offering label gpu: no live worker does" in (
            waited.stderr
        )
        assert "waits for a worker offering label gpu: none is live" in waited.stdout  # live view
        second = waited.stdout.split()[1]  # "started <id> (train)"

        await gpu.start()  # the worker they wait for: they run, and nothing waits any more
        final = await handle.wait(timeout=20)
        assert final.status == "succeeded"
        assert (await client.wait(second, timeout=20)).status == "succeeded"
        assert (await client.workers()).unserved == []
    finally:
        await gpu.stop()
        await linux.stop()


async def test_dispatch_timeout_fails_a_job_no_worker_claims(
    server: NATS, nats_url: str, tmp_path: Path
) -> None:
    linux = Worker(fast_config(nats_url, worker_id="w-linux", labels=frozenset({"linux"})))
    await linux.start()
    try:
        path = gpu_workflow(tmp_path, dispatch_timeout="500ms")
        result = await invoke("run", str(path), "--wait", "--json", "--nats", nats_url)
    finally:
        await linux.stop()
    assert result.exit_code == 1, result.output  # the workflow failed
    final = json.loads(result.stdout)
    assert final["status"] == "failed"
    train = final["jobs"]["train"]
    assert train["status"] == "failed"
    assert train["error"] == (
        "no worker offering label gpu claimed it within 500ms (dispatch_timeout)"
    )
    assert train["attempts"] == 1 and train["worker_id"] is None
    history = await EventStore(server).history(final["workflow_id"])
    queued = next(r.event for r in history if r.event.event_type == "JobQueued"
                  and r.event.job == "train")  # fmt: skip
    failed = next(r.event for r in history if r.event.event_type == "JobFailed")
    waited = (failed.ended_at - queued.queued_at).total_seconds()
    assert 0.5 <= waited < 2.0, waited  # the timer fired in-process, on time
    assert not failed.retryable


async def test_a_timed_out_workflow_ends_with_its_unfinished_jobs_cancelled(
    server: NATS, nats_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(
        "name: slow\n"
        "timeout: 1s\n"
        "jobs:\n"
        "  sleepy: {run: 'sleep 30'}\n"
        "  after: {needs: [sleepy], run: 'true'}\n"
        "  never: {run: 'true', labels: [nobody-has-this]}\n"
    )
    worker = Worker(fast_config(nats_url, worker_id="w-any"))
    await worker.start()
    try:
        result = await invoke("run", str(path), "--wait", "--json", "--nats", nats_url)
        assert result.exit_code == 1, result.output
        final = json.loads(result.stdout)
        status = ok(await invoke("status", final["workflow_id"], "--nats", nats_url)).stdout
    finally:
        await worker.stop()
    assert (final["status"], final["reason"]) == ("failed", "timed out after 1s")
    why = "the workflow timed out after 1s"
    # The final view of run --wait: nothing left running, pending or queued.
    assert {name: (job["status"], job["reason"]) for name, job in final["jobs"].items()} == {
        "sleepy": ("cancelled", why),
        "after": ("cancelled", why),
        "never": ("cancelled", why),
    }
    assert final["jobs"]["sleepy"]["worker_id"] == "w-any"
    assert "running" not in status and "pending" not in status
    assert status.count(why) == 3
