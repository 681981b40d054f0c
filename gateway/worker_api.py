"""The worker protocol of workflow-graph's HTTP workers (register, claim, heartbeat, logs,
complete, fail, cancelled), over ``gateway.leases``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from events.dispatch import capabilities
from events.store import ActorRef
from events.subjects import is_valid_token
from gateway.context import context, request_namespace
from gateway.leases import Claim
from gateway.models import (
    ClaimBody,
    CompleteBody,
    FailBody,
    HeartbeatOut,
    LogChunkIn,
    LogsBody,
    RegisterBody,
)
from gateway.web import ApiError, Json, read_json, validated
from sdk.worker.executors.base import outputs_size
from sdk.worker.log_buffer import LogChunk, LogStream, truncate_line
from sdk.worker.presence import RunningJob

MAX_OUTPUT_BYTES = 64 * 1024
"""Outputs of one job (keys and values), as for NATS workers (``max_output_bytes``)."""
MAX_LINE_BYTES = 16 * 1024
_STREAMS: dict[str, LogStream] = {"stdout": "stdout", "stderr": "stderr", "log": "log"}


async def register(request: Request) -> Response:
    ctx = context(request)
    body = validated(RegisterBody, await read_json(request, ctx.settings.max_body))
    await ctx.presence.register(
        body.worker_id,
        labels=tuple(body.labels),
        handlers=tuple(body.handlers),
        address=_address(request),
        namespace=request_namespace(request),
    )
    return Json({"worker_id": body.worker_id, "registered": True})


async def claim(request: Request) -> Response:
    ctx = context(request)
    body = validated(ClaimBody, await read_json(request, ctx.settings.max_body))
    namespace = request_namespace(request)
    ctx.presence.called(
        body.worker_id,
        labels=tuple(body.labels),
        handlers=tuple(body.handlers),
        address=_address(request),
        namespace=namespace,
    )
    claimed = await ctx.leases.claim(
        worker_id=body.worker_id,
        capabilities=capabilities(body.labels, body.handlers, namespace),
        lease_ttl=body.lease_ttl_secs,
        wait=body.wait_secs,
        gone=request.is_disconnected if body.wait_secs > 0 else None,
    )
    if claimed is None:
        return Json(None)
    lease = claimed.lease
    ctx.presence.running(
        body.worker_id,
        RunningJob(
            workflow_id=lease.workflow_id, job=lease.job, attempt=lease.attempt, epoch=lease.epoch
        ),
        ttl=lease.ttl,
    )
    return Json(claim_out(claimed))


def claim_out(claimed: Claim) -> dict[str, Any]:
    """The claim's answer, in the shape of ``ClaimOut`` (built as a dict: it is on the hot path;
    ``tests/unit/test_gateway_parts.py`` checks it against the model)."""
    state, lease = claimed.state, claimed.lease
    spec = state.spec
    job = {
        "job_id": state.job,
        "workflow_id": state.workflow_id,
        "command": spec.run,
        "required_labels": list(spec.labels),
        "attempt": state.attempt,
        "epoch": state.epoch,
        "env": spec.env,
        "upstream_outputs": spec.upstream_outputs,
        "uses": spec.uses,
        "with": spec.with_,
        "timeout_secs": spec.timeout,
    }
    out = {
        "lease_id": claimed.lease_id,
        "job_id": lease.job,
        "workflow_id": lease.workflow_id,
        "worker_id": lease.worker_id,
        "ttl_secs": lease.ttl,
        "granted_at_ms": lease.granted_at_ms,
        "epoch": lease.epoch,
        "attempt": lease.attempt,
    }
    return {"job": job, "lease": out}


async def heartbeat(request: Request) -> Response:
    ctx = context(request)
    await read_json(request, ctx.settings.max_body)  # any body is ignored, but bounded
    handle = ctx.leases.handle(request.path_params["lease_id"])
    lease = handle.lease
    try:
        expires = await handle.heartbeat()
    except Exception:
        ctx.presence.ended(lease.worker_id, lease.workflow_id, lease.job)
        raise
    ctx.presence.running(
        lease.worker_id,
        RunningJob(
            workflow_id=lease.workflow_id, job=lease.job, attempt=lease.attempt, epoch=lease.epoch
        ),
        ttl=lease.ttl,
    )
    return Json(HeartbeatOut(expires_at_ms=int(expires.timestamp() * 1000)).model_dump())


async def logs(request: Request) -> Response:
    ctx = context(request)
    body = validated(LogsBody, await read_json(request, ctx.settings.max_body))
    handle = ctx.leases.handle(request.path_params["lease_id"])
    lines = log_lines(body.chunks, workflow_id=handle.lease.workflow_id, job=handle.lease.job)
    if lines:
        await handle.push_logs(lines)
    return Json({"accepted": len(lines)})


def log_lines(chunks: Sequence[LogChunkIn], *, workflow_id: str, job: str) -> list[LogChunk]:
    """The stored lines of pushed chunks: one per line of ``data``, cut at 16 KiB; ``seq`` is the
    chunk's ``sequence``. A chunk naming another job is refused (422)."""
    lines: list[LogChunk] = []
    problems = []
    now = time.time()
    for index, chunk in enumerate(chunks):
        if chunk.workflow_id not in (None, workflow_id) or chunk.job_id not in (None, job):
            problems.append(
                f"chunks.{index}: names {chunk.workflow_id}/{chunk.job_id}, "
                f"but the lease is for {workflow_id}/{job}"
            )
            continue
        stream = _STREAMS.get(chunk.stream, "stdout")
        ts = chunk.timestamp_ms / 1000 if chunk.timestamp_ms is not None else now
        for text in chunk.data.splitlines() or [""]:
            line, _ = truncate_line(text, MAX_LINE_BYTES)
            lines.append(LogChunk(seq=chunk.sequence, stream=stream, line=line, ts=ts))
    if problems:
        raise ApiError(422, "invalid_body", "; ".join(problems), problems=problems)
    return lines


async def complete(request: Request) -> Response:
    ctx = context(request)
    body = validated(CompleteBody, await read_json(request, ctx.settings.max_body))
    handle = ctx.leases.handle(request.path_params["lease_id"])
    outputs = {key: _text(value) for key, value in body.outputs.items()}
    size = outputs_size(outputs)
    lease = handle.lease
    ctx.presence.ended(lease.worker_id, lease.workflow_id, lease.job)
    if size > MAX_OUTPUT_BYTES:
        # As for NATS workers: the job fails without retry rather than passing on cut data.
        reason = (
            f"outputs are {size} bytes, over the limit of {MAX_OUTPUT_BYTES}; store large data "
            "elsewhere and output a reference"
        )
        await handle.fail(reason, retryable=False)
        raise ApiError(422, "outputs_too_large", f"{reason} (the job failed)")
    await handle.complete(outputs, body.result)
    return Json({"recorded": "succeeded"})


async def fail(request: Request) -> Response:
    ctx = context(request)
    body = validated(FailBody, await read_json(request, ctx.settings.max_body))
    handle = ctx.leases.handle(request.path_params["lease_id"])
    lease = handle.lease
    ctx.presence.ended(lease.worker_id, lease.workflow_id, lease.job)
    await handle.fail(body.error or "failed (no error given)", retryable=body.retryable)
    return Json({"recorded": "failed", "retryable": body.retryable})


async def cancelled(request: Request) -> Response:
    ctx = context(request)
    workflow_id = request.path_params["workflow_id"]
    job = request.path_params["job"]
    if not (is_valid_token(workflow_id) and is_valid_token(job)):
        raise ApiError(404, "unknown_job", f"no job {job!r} in workflow {workflow_id!r}")
    answer = await ctx.leases.cancelled(workflow_id, job)
    if answer is None and await ctx.leases.store.last_seq(ActorRef.workflow(workflow_id)) == 0:
        raise ApiError(404, "unknown_workflow", f"workflow {workflow_id} not found")
    return Json(bool(answer))


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _address(request: Request) -> str:
    return request.client.host if request.client is not None else ""
