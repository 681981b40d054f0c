"""``jetwork worker`` processes on a real nats-server: crash, pause, shutdown, bad configuration.

Each worker is a real process (``python -m sdk.cli worker``) with a 2 s lease and 0.5 s heartbeats;
jobs are queued by ``tests.jobs_harness`` and every assertion reads the job actor's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from events import subjects
from events.catalog import JobResultRejected, JobStarted, JobSucceeded
from events.store import EventStore
from sdk.worker.logs import LogBatch
from tests.eventually import assert_eventually
from tests.jobs_harness import JobsHarness, unfinished_dispatches

LEASE = 2.0
REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def exit_code(self, timeout: float = 15.0) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdk.cli", "worker", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    env.update(extra)
    return env


@pytest.fixture
def spawn(nats_url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(worker_id: str, **env: str) -> WorkerProcess:
        settings = {
            "JETWORK_WORKER_CANCELLATION_CHECK_INTERVAL": "0.5",
            "JETWORK_WORKER_LOG_BATCH_INTERVAL": "50ms",
            "JETWORK_WORKER_KILL_GRACE": "1",
            **env,
        }
        log = tmp_path / f"{worker_id}.log"
        command = worker_command(
            "--nats", nats_url, "--id", worker_id, "--lease-ttl", f"{LEASE:g}s",
            "--heartbeat", "0.5s", "--poll-interval", "250ms",
        )  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=clean_env(**settings)
            )
        process = WorkerProcess(worker_id, proc, log)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.send_signal(signal.SIGCONT)
            process.proc.kill()
            process.proc.wait()


async def ready(nc: NATS, *workers: WorkerProcess) -> None:
    """Wait until each worker has announced itself (it pulls from the label sets in use)."""
    kv = await nc.jetstream().key_value(subjects.KV_WORKERS)
    for worker in workers:

        async def announced(worker: WorkerProcess = worker) -> bool:
            assert worker.proc.poll() is None, worker.output()
            try:
                await kv.get(worker.worker_id)
            except KeyNotFoundError:
                return False
            return True

        await assert_eventually(announced, timeout=15, message=f"{worker.worker_id} never started")


async def first(harness: JobsHarness, job: str, kind: type[Any], timeout: float = 15) -> Any:
    async def probe() -> Any:
        found = await harness.events("wf", job, kind)
        assert found, await harness.types("wf", job)
        return found[0]

    return await assert_eventually(probe, timeout=timeout, interval=0.02)


async def queued_messages(nc: NATS) -> int:
    return await unfinished_dispatches(nc)


async def test_a_killed_worker_s_job_reruns_on_the_other_after_the_lease(
    clean_nats: NATS, spawn: Any
) -> None:
    harness = JobsHarness(clean_nats)
    workers = {w.worker_id: w for w in (spawn("w-a"), spawn("w-b"))}
    await ready(clean_nats, *workers.values())
    await harness.queue("wf", "job", run='sleep 1; echo "::set-output by=$JETWORK_WORKER_ID"')
    claim = await first(harness, "job", JobStarted)
    victim = workers.pop(claim.worker_id)
    victim.signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)
    done = await first(harness, "job", JobSucceeded)
    (survivor,) = workers
    started = await harness.events("wf", "job", JobStarted)
    assert [(s.epoch, s.worker_id) for s in started] == [(1, victim.worker_id), (2, survivor)]
    assert (done.epoch, done.outputs) == (2, {"by": survivor})
    assert len(await harness.events("wf", "job", JobSucceeded)) == 1
    rerun_after = (started[1].started_at - killed_at).total_seconds()
    print(f"re-run {rerun_after:.2f}s after SIGKILL (lease {LEASE:g}s)")
    assert LEASE - 0.6 < rerun_after < LEASE + 1.5


async def test_a_paused_worker_s_late_result_is_rejected(clean_nats: NATS, spawn: Any) -> None:
    harness = JobsHarness(clean_nats)
    # The paused worker must not notice the takeover before it reports: check the log rarely.
    paused = spawn("w-paused", JETWORK_WORKER_CANCELLATION_CHECK_INTERVAL="60")
    await ready(clean_nats, paused)
    await harness.queue("wf", "job", run='sleep 0.3; echo "::set-output by=$JETWORK_WORKER_ID"')
    await first(harness, "job", JobStarted)
    paused.signal(signal.SIGSTOP)
    other = spawn("w-other")
    await ready(clean_nats, other)
    done = await first(harness, "job", JobSucceeded)
    assert (done.epoch, done.worker_id, done.outputs) == (2, "w-other", {"by": "w-other"})
    paused.signal(signal.SIGCONT)
    rejected = await first(harness, "job", JobResultRejected)
    assert (rejected.epoch, rejected.worker_id, rejected.outcome) == (1, "w-paused", "succeeded")
    assert await harness.types("wf", "job") == [
        "JobQueued",
        "JobStarted",
        "JobStarted",
        "JobSucceeded",
        "JobResultRejected",
    ]
    assert "job result rejected" in paused.output()


async def test_sigterm_finishes_the_running_job_and_exits_0(clean_nats: NATS, spawn: Any) -> None:
    harness = JobsHarness(clean_nats)
    worker = spawn("w-term")
    await ready(clean_nats, worker)
    await harness.queue("wf", "job", run="sleep 1; echo '::set-output ok=1'")
    await first(harness, "job", JobStarted)
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 0, worker.output()
    done = await harness.events("wf", "job", JobSucceeded)
    assert [d.outputs for d in done] == [{"ok": "1"}]
    assert await queued_messages(clean_nats) == 0
    kv = await clean_nats.jetstream().key_value(subjects.KV_WORKERS)
    with pytest.raises(KeyNotFoundError):
        await kv.get("w-term")  # a clean exit removes the worker at once
    output = worker.output()
    assert "worker stopped" in output and "Traceback" not in output, output
    assert "succeeded': 1" in output.split("worker stopped")[1], output


async def test_a_second_sigterm_aborts_and_lets_the_lease_lapse(
    clean_nats: NATS, spawn: Any, tmp_path: Path
) -> None:
    harness = JobsHarness(clean_nats)
    worker = spawn("w-abort")
    await ready(clean_nats, worker)
    pid_file = tmp_path / "pid"
    await harness.queue("wf", "job", run=f"echo $$ > {pid_file}; exec sleep 60")
    await first(harness, "job", JobStarted)
    await assert_eventually(pid_file.exists)
    worker.signal(signal.SIGTERM)
    await assert_eventually(lambda: "worker draining" in worker.output())
    worker.signal(signal.SIGTERM)
    assert await worker.exit_code() == 3, worker.output()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert await harness.types("wf", "job") == ["JobQueued", "JobStarted"]
    assert await queued_messages(clean_nats) == 1  # not acked: redelivered after the lease


async def test_a_second_sigterm_exits_3_within_the_kill_grace_whatever_the_jobs_do(
    clean_nats: NATS, spawn: Any, tmp_path: Path
) -> None:
    """Jobs that ignore SIGTERM, flood their output, or leave a process holding their pipes:
    the second signal still ends the worker within kill_grace (1 s) plus a second."""
    harness = JobsHarness(clean_nats)
    worker = spawn("w-hard", JETWORK_WORKER_CONCURRENCY="3", JETWORK_WORKER_SHUTDOWN_GRACE="none")
    await ready(clean_nats, worker)
    pids = {name: tmp_path / f"{name}.pid" for name in ("deaf", "flood", "escaped")}
    jobs = {
        "deaf": f"trap '' TERM; echo $$ > {pids['deaf']}; while :; do sleep 0.1; done",
        "flood": f"echo $$ > {pids['flood']}; exec yes flood",
        "escaped": f"setsid sh -c 'echo $$ > {pids['escaped']}; exec sleep 60' & sleep 60",
    }
    for job, script in jobs.items():
        await harness.queue("wf", job, run=script)
    for job in jobs:
        await first(harness, job, JobStarted)
    for pid_file in pids.values():
        await assert_eventually(pid_file.exists)
    try:
        worker.signal(signal.SIGTERM)
        await assert_eventually(lambda: "worker draining" in worker.output())
        second = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = await worker.exit_code()
        took = time.monotonic() - second
        print(f"worker exited {code} {took:.2f}s after the second signal (kill grace 1s)")
        assert code == 3, worker.output()
        assert took < 1.0 + 1.0, f"exited {took:.2f}s after the second signal\n{worker.output()}"
        for name in ("deaf", "flood"):
            await assert_eventually(lambda n=name: _gone(int(pids[n].read_text())), timeout=2)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it left the job's group: not ours to stop
            os.kill(int(pids["escaped"].read_text()), signal.SIGKILL)
    assert "Traceback" not in worker.output()


async def test_jobs_see_the_worker_s_environment_unless_it_is_cleared(
    clean_nats: NATS, spawn: Any
) -> None:
    harness = JobsHarness(clean_nats)
    secrets = {"DEPLOY_TOKEN": "s3cret", "AWS_REGION": "eu-west-1"}
    inheriting = spawn("w-env", JETWORK_WORKER_LABELS="env", **secrets)
    clearing = spawn(
        "w-clean", JETWORK_WORKER_LABELS="clean", JETWORK_WORKER_ENV_CLEAR="1",
        JETWORK_WORKER_ENV_ALLOW="AWS_*", **secrets,
    )  # fmt: skip
    await ready(clean_nats, inheriting, clearing)
    script = 'echo "token=${DEPLOY_TOKEN:-unset} region=${AWS_REGION:-unset} job=$JETWORK_JOB"'
    for label in ("env", "clean"):
        await harness.queue("wf", label, run=script, labels=[label], env={"JETWORK_JOB": "x"})
    for label in ("env", "clean"):
        await first(harness, label, JobSucceeded)
    logs = EventStore(clean_nats, stream=subjects.LOGS_STREAM)

    async def printed(job: str) -> list[str]:
        batches = [LogBatch.decode(m.data) for m in await logs.read_raw(subjects.log("wf", job))]
        return [chunk.line for batch in batches for chunk in batch.chunks]

    assert await printed("env") == ["token=s3cret region=eu-west-1 job=env"]
    assert await printed("clean") == ["token=unset region=eu-west-1 job=clean"]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--lease-ttl", "2s", "--heartbeat", "2s"],
            {},
            "heartbeat_interval (2s) must be less than lease_ttl (2s)",
        ),
        ([], {"JETWORK_WORKER_CONCURRENCY": "many"}, "JETWORK_WORKER_CONCURRENCY='many'"),
        (["--labels", "linux,bad label"], {}, "labels 'bad label' are not valid"),
        (["--nats", "nats://127.0.0.1:1"], {}, "cannot reach the NATS server at"),
        (["--env-allow", "HOME"], {}, "env_allow is set but env_clear is not"),
        (["--env-clear", "--env-allow", "A-B"], {}, "env_allow 'A-B': use variable names"),
    ],
    ids=[
        "heartbeat-not-below-lease",
        "bad-env",
        "bad-label",
        "unreachable",
        "allow-without-clear",
        "bad-allow",
    ],
)
def test_the_cli_refuses_bad_settings_in_one_line(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = subprocess.run(
        worker_command(*args),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=clean_env(**env),
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0]
