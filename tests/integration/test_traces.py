"""OpenTelemetry traces exported by the real processes (``jetwork server``, ``jetwork worker``)
to an OTLP/HTTP receiver: one trace per workflow run, the workflow span from the engine as the
parent of every attempt's ``job`` and ``dispatch wait`` spans from the worker."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from telemetry.tracing import workflow_ids
from tests.eventually import assert_eventually
from tests.integration.test_metrics import Process, run, spawn
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver().start()
    try:
        yield started
    finally:
        started.stop()


@dataclass
class Traced:
    env: dict[str, str]
    worker: Process


@pytest.fixture
async def traced(tmp_path: Path, receiver: OtlpReceiver) -> AsyncIterator[Traced]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JETWORK_", "OTEL_"))}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    server = await spawn(
        "server", "--port", "0", "--data-dir", str(tmp_path / "jw"), "--no-http",
        "--log-format", "json", env=env,
    )  # fmt: skip
    worker: Process | None = None
    try:
        await server.wait_for_line("ready")
        export = await server.wait_for_line("export JETWORK_NATS_URL=")
        env["JETWORK_NATS_URL"] = export.split("export JETWORK_NATS_URL=")[1].split()[0]
        worker = await spawn("worker", "--log-format", "json", env=env)
        await worker.wait_for_line("worker started")
        yield Traced(env, worker)
    finally:
        try:  # the server is stopped even when the worker's check fails
            if worker is not None:
                log = await worker.stop()
                assert worker.proc.returncode == 0, log[-2000:]
        finally:
            log = await server.stop()
            assert server.proc.returncode == 0, log[-2000:]


async def test_one_trace_per_run_across_the_processes(
    traced: Traced, receiver: OtlpReceiver
) -> None:
    done = await run("run", "examples/diamond.yaml", "--wait", "--json", env=traced.env)
    assert done.code == 0, done.out + done.err
    workflow_id = json.loads(done.out)["workflow_id"]
    trace_number, span_number = workflow_ids(workflow_id)
    trace_id, workflow_span = f"{trace_number:032x}", f"{span_number:016x}"

    def exported() -> bool:
        assert len(receiver.named("workflow ")) == 1, receiver.spans
        assert len(receiver.named("job ")) == 7, receiver.spans
        assert len(receiver.named("dispatch wait ")) == 7, receiver.spans
        return True

    await assert_eventually(exported, timeout=20, interval=0.1)
    [root] = receiver.named("workflow ")
    assert (root.name, root.service, root.trace_id, root.span_id, root.parent_id) == (
        "workflow diamond", "jetwork-server", trace_id, workflow_span, "",
    )  # fmt: skip
    assert root.attributes["jetwork.status"] == "succeeded" and not root.error
    children = receiver.named("job ") + receiver.named("dispatch wait ")
    assert {(s.trace_id, s.parent_id, s.service) for s in children} == {
        (trace_id, workflow_span, "jetwork-worker")
    }
    assert all(root.start_ns <= s.start_ns and s.end_ns <= root.end_ns for s in children)
    flaky = sorted(receiver.named("job flaky"), key=lambda s: s.attributes["jetwork.attempt"])
    assert [(s.attributes["jetwork.outcome"], s.error) for s in flaky] == [
        ("failed", True), ("succeeded", False),
    ]  # fmt: skip
    assert {s.name.removeprefix("job ") for s in receiver.named("job ")} == {
        "start", "left", "flaky", "join", "report", "cleanup",
    }  # fmt: skip

    # The worker's JSON log lines about the run carry its trace id.
    finished = json.loads(await traced.worker.wait_for_line('"job finished"'))
    assert (finished["workflow_id"], finished["trace_id"]) == (workflow_id, trace_id)


async def test_a_run_started_inside_a_callers_trace_joins_it(
    traced: Traced, receiver: OtlpReceiver
) -> None:
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    done = await run(
        "run", "examples/hello.yaml", "--wait", "--json",
        "--traceparent", f"00-{caller_trace}-{caller_span}-01", env=traced.env,
    )  # fmt: skip
    assert done.code == 0, done.out + done.err
    workflow_id = json.loads(done.out)["workflow_id"]
    _, span_number = workflow_ids(workflow_id)
    workflow_span = f"{span_number:016x}"

    def exported() -> bool:
        assert len(receiver.named("workflow ")) == 1, receiver.spans
        assert receiver.named("job "), receiver.spans
        return True

    await assert_eventually(exported, timeout=20, interval=0.1)
    [root] = receiver.named("workflow ")
    assert (root.trace_id, root.span_id, root.parent_id) == (
        caller_trace, workflow_span, caller_span,
    )  # fmt: skip
    children = receiver.named("job ") + receiver.named("dispatch wait ")
    assert {(s.trace_id, s.parent_id) for s in children} == {(caller_trace, workflow_span)}


async def test_a_malformed_traceparent_is_refused_before_anything_is_sent(traced: Traced) -> None:
    done = await run(
        "run", "examples/hello.yaml", "--traceparent", "01-zz-nope", env=traced.env
    )  # fmt: skip
    assert done.code != 0
    assert "traceparent" in done.err and "Traceback" not in done.err
