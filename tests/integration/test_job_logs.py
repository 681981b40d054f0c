"""A job's log from the real worker to ``jetwork logs``: every line, in write order, per attempt.

The engine, an in-process worker and the CLI (``CliRunner``) share the test's server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine, EngineSettings
from events.store import EventStore
from sdk.client import Client
from sdk.client.logs import LogLine
from sdk.worker import Worker
from tests.engine_harness import ended, start_workflow
from tests.eventually import assert_eventually
from tests.integration.test_cli import invoke
from tests.jobs_harness import fast_config


@pytest.fixture
async def engine(clean_nats: NATS) -> AsyncIterator[Engine]:
    running = Engine(clean_nats, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def worker(clean_nats: NATS, nats_url: str, engine: Engine) -> AsyncIterator[Worker]:
    running = Worker(fast_config(nats_url, worker_id="w-logs"))
    await running.start()
    yield running
    await running.stop()


async def run_to_end(nc: NATS, wf: str, jobs: dict[str, Any], timeout: float = 60) -> str:
    await start_workflow(nc, wf, {"name": "logs", "jobs": jobs})
    store = EventStore(nc)

    async def end() -> str | None:
        return ended(await store.history(wf))

    result: str = await assert_eventually(end, timeout=timeout, interval=0.1)
    return result


async def test_a_retried_job_shows_every_attempt_even_one_that_printed_nothing(
    clean_nats: NATS, nats_url: str, worker: Worker, tmp_path: Path
) -> None:
    marker = tmp_path / "second"
    script = (
        f"if [ -e {marker} ]; then echo out; echo err >&2; echo 'out again'; exit 0; fi; "
        f"touch {marker}; exit 1"
    )
    retry = {"max_attempts": 2, "backoff": "fixed", "delay": "0.2s"}
    outcome = await run_to_end(clean_nats, "wf-retried", {"flaky": {"run": script, "retry": retry}})
    assert outcome == "WorkflowSucceeded"
    result = await invoke("logs", "wf-retried", "flaky", "--nats", nats_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "── attempt 1 ──",
        "── attempt 2 ──",
        "out",
        "[stderr] err",
        "out again",
    ]


async def test_a_hundred_thousand_lines_arrive_in_the_order_written(
    clean_nats: NATS, nats_url: str, worker: Worker
) -> None:
    """Every line of a fast writer (stdout with stderr between), none dropped, none reordered.

    ``make bench`` (``python -m bench logs``) runs the million-line version and reports lines/s.
    """
    count = 100_000
    script = (
        f'i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo "out $i"; '
        'if [ $((i % 1000)) -eq 0 ]; then echo "err $i" >&2; fi; done'
    )
    outcome = await run_to_end(clean_nats, "wf-chatty", {"chatty": {"run": script}}, timeout=90)
    assert outcome == "WorkflowSucceeded"
    client = Client(clean_nats)
    lines: list[LogLine] = [line async for line in client.logs("wf-chatty", "chatty")]
    written = []
    for i in range(1, count + 1):
        written.append(("stdout", f"out {i}"))
        if i % 1000 == 0:
            written.append(("stderr", f"err {i}"))
    assert len(lines) == len(written)
    assert [(line.stream, line.line) for line in lines] == written
    assert [line.seq for line in lines] == list(range(1, len(written) + 1))
