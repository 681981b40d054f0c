"""Server-sent event streams: a job's log (replayed, then followed) and live events.

Each SSE message is one JSON object in ``data:``. Events carry ``id: <stream sequence>``, so a
client that reconnects with ``Last-Event-ID`` resumes after the last event it saw. An idle stream
sends a ``: keep-alive`` comment every ``KEEPALIVE`` seconds; a log stream ends with
``event: end`` once the job has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.context import context
from gateway.web import ApiError
from sdk.cli._render import event_record
from sdk.client import event_filter
from sdk.errors import JobNotFound

KEEPALIVE: Final = 15.0
T = TypeVar("T")
_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse(data: Any, *, event: str | None = None, id_: int | None = None) -> bytes:
    head = b""
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    if id_ is not None:
        head += b"id: " + str(id_).encode() + b"\n"
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


async def with_keepalive(
    items: AsyncIterator[T], interval: float
) -> AsyncGenerator[T | None, None]:
    """``items``, with a ``None`` whenever nothing came for ``interval`` seconds."""
    pending: asyncio.Task[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def log_stream(request: Request) -> Response:
    """``GET .../jobs/{job}/logs?follow=1`` (and ``.../logs/stream``): lines as they come."""
    ctx = context(request)
    workflow_id, job = request.path_params["workflow_id"], request.path_params["job"]
    view = await ctx.client.status(workflow_id)  # 404 before the stream starts
    if job not in view.jobs:
        raise JobNotFound(workflow_id, job, view.jobs)

    async def body() -> AsyncGenerator[bytes, None]:
        lines = ctx.client.logs(workflow_id, job, follow=True)
        async with contextlib.aclosing(lines):
            index = 0
            async for line in with_keepalive(lines, KEEPALIVE):
                if line is None:
                    yield b": keep-alive\n\n"
                    continue
                index += 1
                yield sse(
                    {
                        "attempt": line.attempt,
                        "seq": line.seq,
                        "stream": line.stream,
                        "line": line.line,
                        "time": line.time.isoformat(),
                    },
                    id_=index,
                )
        final = await ctx.client.status(workflow_id)
        state = final.jobs[job].status if job in final.jobs else None
        yield sse({"job": job, "status": state}, event="end")

    return StreamingResponse(body(), media_type="text/event-stream", headers=_HEADERS)


async def event_stream(request: Request) -> Response:
    """``GET /api/events``: events as they are appended, with ``jetwork watch``'s filters
    (``workflow_id``, ``job``, ``type``, ``from_start``) and ``Last-Event-ID`` to resume."""
    ctx = context(request)
    params = request.query_params
    try:  # a bad filter is a 422 before the stream starts
        event_filter(
            params.get("workflow_id") or None, params.get("job") or None, params.get("type") or None
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_argument", str(exc)) from None
    workflow_id = params.get("workflow_id")
    if workflow_id:  # another namespace's workflow is not found here (404), as its status
        await ctx.client.require_in_namespace(workflow_id)
    from_seq: int | None = 1 if params.get("from_start") in {"1", "true", "yes"} else None
    last = request.headers.get("last-event-id")
    if last is not None and last.strip().isdigit():
        from_seq = int(last) + 1

    async def body() -> AsyncGenerator[bytes, None]:
        # The client's subscription: only the request's namespace's workflows' events.
        tail = ctx.client.subscribe(
            workflow_id=params.get("workflow_id") or None,
            job=params.get("job") or None,
            event_type=params.get("type") or None,
            from_seq=from_seq,
        )
        async with contextlib.aclosing(tail):
            async for recorded in with_keepalive(tail, KEEPALIVE):
                if recorded is None:
                    yield b": keep-alive\n\n"
                    continue
                yield sse(event_record(recorded), id_=recorded.seq)

    return StreamingResponse(body(), media_type="text/event-stream", headers=_HEADERS)
