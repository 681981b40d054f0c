from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from pydantic import BaseModel

from events.catalog import JobSpec
from events.errors import JetworkError
from sdk.worker.executors import (
    Abandoned,
    Cancelled,
    Failed,
    PythonExecutor,
    RoutingExecutor,
    ShellExecutor,
    Succeeded,
)
from sdk.worker.handlers import HandlerRegistry, PermanentError
from sdk.worker.job_context import JobContext
from sdk.worker.log_buffer import LogBuffer, LogChunk
from tests.eventually import assert_eventually


class ResizeIn(BaseModel):
    url: str
    width: int


class ResizeOut(BaseModel):
    url: str
    width: int
    meta: dict[str, Any] = {}


class Collected:
    def __init__(self) -> None:
        self.chunks: list[LogChunk] = []

    async def __call__(self, batch: Sequence[LogChunk]) -> None:
        self.chunks.extend(batch)

    def lines(self, stream: str) -> list[str]:
        return [c.line for c in self.chunks if c.stream == stream]


@pytest.fixture
def logs() -> Collected:
    return Collected()


@pytest.fixture
async def ctx(logs: Collected) -> AsyncIterator[JobContext]:
    buffer = LogBuffer(logs, interval=0.01)
    yield JobContext(
        workflow_id="wf1",
        job="resize",
        attempt=2,
        worker_id="w-test",
        upstream_outputs={"fetch": {"url": "s3://x"}},
        log_sink=buffer,
    )
    await buffer.close()


registry = HandlerRegistry()
started = threading.Event()


@registry.job("resize")
async def resize(ctx: JobContext, inp: ResizeIn) -> ResizeOut:
    ctx.log.info("resizing", url=inp.url)
    return ResizeOut(url=inp.url + "?w=" + str(inp.width), width=inp.width, meta={"a": [1]})


@registry.job("sync-resize")
def sync_resize(ctx: JobContext, inp: ResizeIn) -> dict[str, Any]:
    assert threading.current_thread() is not threading.main_thread()
    ctx.log.info("in a thread")
    ctx.set_output("explicit", "yes")
    return {"url": inp.url, "ok": True, "n": 3, "nested": {"x": 1}, "none": None}


@registry.job("upstream")
async def upstream(ctx: JobContext) -> str:
    return ctx.upstream_outputs["fetch"]["url"]


@registry.job("permanent")
async def permanent(ctx: JobContext) -> None:
    raise PermanentError("the image is corrupt")


@registry.job("flaky")
async def flaky(ctx: JobContext) -> None:
    raise ConnectionError("storage unreachable")


@registry.job("retryable-jetwork")
async def retryable_jetwork(ctx: JobContext) -> None:
    raise JetworkError("try later", retryable=True)


@registry.job("forever")
async def forever(ctx: JobContext) -> None:
    ctx.log.info("started")
    await asyncio.Event().wait()


@registry.job("cooperative")
def cooperative(ctx: JobContext) -> None:
    started.set()
    deadline = time.monotonic() + 10  # never outlive a failed test by much
    while time.monotonic() < deadline:
        ctx.raise_if_cancelled()
        time.sleep(0.005)


@registry.job("bad-output")
async def bad_output(ctx: JobContext) -> dict[str, Any]:
    return {"width": "wide"}


@registry.job("bad-output-typed", output_model=ResizeOut)
async def bad_output_typed(ctx: JobContext) -> dict[str, Any]:
    return {"url": "u"}


@registry.job("not-json")
async def not_json(ctx: JobContext) -> object:
    return object()


@registry.job("huge")
async def huge(ctx: JobContext) -> dict[str, str]:
    return {"blob": "x" * 100_000}


def execute(spec: JobSpec, ctx: JobContext, **kw: Any) -> Any:
    return PythonExecutor(registry, **kw).execute(spec, ctx)


async def test_async_handler_with_models(ctx: JobContext, logs: Collected) -> None:
    spec = JobSpec(uses="resize", **{"with": {"url": "img.png", "width": "64"}})
    result = await execute(spec, ctx)
    assert result == Succeeded(
        outputs={"url": "img.png?w=64", "width": "64"},
        result={"url": "img.png?w=64", "width": 64, "meta": {"a": [1]}},
    )
    await ctx.log_sink.close()  # type: ignore[attr-defined]
    assert logs.lines("log") == ["INFO resizing url='img.png'"]


async def test_sync_handler_runs_in_a_thread(ctx: JobContext, logs: Collected) -> None:
    spec = JobSpec(uses="sync-resize", **{"with": {"url": "a", "width": 1}})
    result = await execute(spec, ctx)
    assert isinstance(result, Succeeded)
    assert result.outputs == {"url": "a", "ok": "true", "n": "3", "explicit": "yes"}
    assert result.result["nested"] == {"x": 1}
    await assert_eventually(lambda: logs.lines("log") == ["INFO in a thread"], timeout=2)


async def test_handler_sees_upstream_outputs(ctx: JobContext) -> None:
    result = await execute(JobSpec(uses="upstream"), ctx)
    assert result == Succeeded(outputs={}, result="s3://x")


async def test_input_validation_error_is_permanent(ctx: JobContext) -> None:
    spec = JobSpec(uses="resize", **{"with": {"url": "a", "width": "wide"}})
    result = await execute(spec, ctx)
    assert isinstance(result, Failed)
    assert not result.retryable
    assert "invalid inputs for handler 'resize'" in result.error
    assert "width" in result.error


async def test_missing_handler_is_permanent(ctx: JobContext) -> None:
    result = await execute(JobSpec(uses="nope"), ctx)
    assert isinstance(result, Failed) and not result.retryable
    assert "no handler named 'nope' on worker w-test" in result.error


async def test_permanent_error_is_not_retryable(ctx: JobContext, logs: Collected) -> None:
    result = await execute(JobSpec(uses="permanent"), ctx)
    assert result == Failed("PermanentError: the image is corrupt", retryable=False)


async def test_other_exceptions_are_retryable_with_traceback_in_log(
    ctx: JobContext, logs: Collected
) -> None:
    result = await execute(JobSpec(uses="flaky"), ctx)
    assert result == Failed("ConnectionError: storage unreachable", retryable=True)
    await assert_eventually(
        lambda: any("ConnectionError: storage unreachable" in line for line in logs.lines("stderr"))
    )
    assert any("Traceback" in line for line in logs.lines("stderr"))


async def test_retryability_on_a_jetwork_error_is_respected(ctx: JobContext) -> None:
    result = await execute(JobSpec(uses="retryable-jetwork"), ctx)
    assert isinstance(result, Failed) and result.retryable


async def test_result_not_matching_output_model_fails_permanently(ctx: JobContext) -> None:
    for name in ("bad-output-typed", "not-json"):
        result = await execute(JobSpec(uses=name), ctx)
        assert isinstance(result, Failed) and not result.retryable, result
        assert f"handler {name!r} returned" in result.error


async def test_oversized_outputs_fail_permanently(ctx: JobContext) -> None:
    result = await execute(JobSpec(uses="huge"), ctx, max_output_bytes=1000)
    assert isinstance(result, Failed) and not result.retryable
    assert "over the worker's max_output_bytes of 1000" in result.error


async def test_timeout_cancels_the_handler(ctx: JobContext) -> None:
    result = await execute(JobSpec(uses="forever", timeout=0.1), ctx)
    assert result == Failed("timed out after 0.1s", retryable=True, timed_out=True)


async def test_cancellation_cancels_the_handler(ctx: JobContext, logs: Collected) -> None:
    task = asyncio.ensure_future(execute(JobSpec(uses="forever"), ctx))
    await assert_eventually(lambda: logs.lines("log") == ["INFO started"], timeout=5)
    ctx.request_cancel("stop it")
    assert await asyncio.wait_for(task, 2) == Cancelled("stop it")


async def test_lease_lost_abandons_the_handler(ctx: JobContext, logs: Collected) -> None:
    task = asyncio.ensure_future(execute(JobSpec(uses="forever"), ctx))
    await assert_eventually(lambda: logs.lines("log") == ["INFO started"], timeout=5)
    ctx.mark_lease_lost()
    result = await asyncio.wait_for(task, 2)
    assert isinstance(result, Abandoned) and not result.reportable


async def test_sync_handler_stops_cooperatively(ctx: JobContext) -> None:
    started.clear()
    task = asyncio.ensure_future(execute(JobSpec(uses="cooperative"), ctx))
    await assert_eventually(started.is_set, timeout=5)
    ctx.request_cancel()
    assert await asyncio.wait_for(task, 2) == Cancelled("cancelled by user")


async def test_routing_executor_picks_by_spec(ctx: JobContext) -> None:
    router = RoutingExecutor(shell=ShellExecutor(), python=PythonExecutor(registry))
    assert isinstance(await router.execute(JobSpec(uses="upstream"), ctx), Succeeded)
    assert isinstance(await router.execute(JobSpec(run="true"), ctx), Succeeded)
    nothing = await router.execute(JobSpec(), ctx)
    assert isinstance(nothing, Failed) and not nothing.retryable
    no_python = RoutingExecutor(shell=ShellExecutor(), python=None)
    refused = await no_python.execute(JobSpec(uses="upstream"), ctx)
    assert isinstance(refused, Failed) and "runs no Python handlers" in refused.error
