"""Runs registered Python handlers (``uses: name``) and turns what they do into results.

- Inputs: the job's ``with`` validated against the handler's input model; invalid inputs fail the
  job without retry, with pydantic's explanation.
- Result: the return value validated against the output model (if any) and made JSON-ready;
  a model or dict result also yields **outputs**: every top-level string, number or boolean
  (numbers and booleans as JSON text, ``True`` → ``"true"``) under a key that is a valid name;
  nested values and ``None`` stay in ``result`` only. ``ctx.set_output`` values win over those.
  Outputs and the JSON result are each bounded by ``max_output_bytes``; over it, the job fails
  without retry.
- Errors: ``PermanentError`` (or any ``JetworkError`` with ``retryable=False``) fails without
  retry; any other exception fails retryably. Either way the message is ``Type: message`` and the
  traceback's tail goes to the job's ``stderr`` log.
- Stopping: cancel, timeout and lost lease cancel an async handler's task. A sync handler runs in
  a thread, which Python cannot interrupt: the result is decided at once and the thread is left to
  notice ``ctx.cancelled`` / ``ctx.raise_if_cancelled()``; whatever it returns later is ignored.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Mapping
from typing import Any, Final

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from events.catalog import JobSpec
from events.errors import JetworkError, LeaseLost
from events.subjects import is_valid_token
from sdk.worker.config import KIB, WorkerConfig
from sdk.worker.executors.base import (
    Abandoned,
    Cancelled,
    ExecutionResult,
    Failed,
    Parked,
    Succeeded,
    clip_error,
    outputs_size,
    settle,
    supervise,
    too_large,
)
from sdk.worker.handlers import Handler, HandlerRegistry
from sdk.worker.in_progress import InProgress
from sdk.worker.job_context import CancellationRequested, JobContext

TRACEBACK_LINES: Final = 20


class PythonExecutor:
    """Runs the handler named by ``spec.uses`` from ``handlers``."""

    def __init__(
        self,
        handlers: HandlerRegistry,
        *,
        max_output_bytes: int = 64 * KIB,
        cancel_grace: float = 5.0,
    ) -> None:
        self.handlers = handlers
        self.max_output_bytes = max_output_bytes
        self.cancel_grace = cancel_grace

    @classmethod
    def from_config(cls, handlers: HandlerRegistry, config: WorkerConfig) -> PythonExecutor:
        return cls(
            handlers, max_output_bytes=config.max_output_bytes, cancel_grace=config.kill_grace
        )

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult:
        if not spec.uses:
            return Failed("the job has no `uses` handler name", retryable=False)
        handler = self.handlers.get(spec.uses)
        if handler is None:
            known = ", ".join(self.handlers.names) or "none"
            return Failed(
                f"no handler named {spec.uses!r} on worker {ctx.worker_id or '?'} "
                f"(registered: {known})",
                retryable=False,
            )
        try:
            inputs = handler.parse_inputs(spec.with_)
        except (ValidationError, ValueError) as exc:
            return Failed(f"invalid inputs for handler {handler.name!r}: {exc}", retryable=False)
        work = asyncio.ensure_future(handler.invoke(ctx, inputs))
        work.add_done_callback(lambda _: ctx.mark_ended())
        interrupt = await supervise(work, ctx, timeout=spec.timeout)
        if interrupt is not None:
            await settle(work, grace=self.cancel_grace)
            return interrupt.result(ctx, spec.timeout)
        error = work.exception() if not work.cancelled() else asyncio.CancelledError()
        if error is not None:
            return self._failure(handler, ctx, error)
        return self._success(handler, ctx, work.result())

    def _failure(self, handler: Handler, ctx: JobContext, exc: BaseException) -> ExecutionResult:
        if isinstance(exc, LeaseLost):
            return Abandoned(str(exc))
        if isinstance(exc, CancellationRequested):
            return Cancelled(exc.reason)
        if isinstance(exc, asyncio.CancelledError):
            # Nobody asked for it (that is handled by supervision): treat it as a crash.
            return Failed(f"handler {handler.name!r} was cancelled unexpectedly", retryable=True)
        lines = "".join(traceback.format_exception(exc)).rstrip("\n").splitlines()
        for line in lines[-TRACEBACK_LINES:]:
            ctx.emit("stderr", line)
        retryable = exc.retryable if isinstance(exc, JetworkError) else True
        return Failed(clip_error(f"{type(exc).__name__}: {exc}"), retryable=retryable)

    def _success(self, handler: Handler, ctx: JobContext, value: Any) -> ExecutionResult:
        if isinstance(value, InProgress):
            return _parked(value, self.max_output_bytes)
        try:
            result = _to_json(handler, value)
        except (ValidationError, ValueError, PydanticSerializationError) as exc:
            return Failed(
                f"handler {handler.name!r} returned an unusable result: {exc}", retryable=False
            )
        try:
            size = len(orjson.dumps(result))
        except orjson.JSONEncodeError as exc:
            return Failed(
                f"handler {handler.name!r} returned a result that is not JSON: {exc}",
                retryable=False,
            )
        if size > self.max_output_bytes:
            return too_large("the handler's JSON result", size, self.max_output_bytes)
        outputs = {**outputs_from_result(result), **ctx.outputs}
        size = outputs_size(outputs)
        if size > self.max_output_bytes:
            return too_large("outputs", size, self.max_output_bytes)
        return Succeeded(outputs=outputs, result=result)


def _parked(value: InProgress, limit: int) -> ExecutionResult:
    outputs = dict(value.outputs)
    size = outputs_size(outputs)
    if size > limit:
        return too_large("InProgress outputs", size, limit)
    return Parked(after=value.seconds, outputs=outputs)


def _to_json(handler: Handler, value: Any) -> Any:
    model = handler.output_model
    if model is not None and value is not None:
        value = value if isinstance(value, model) else model.model_validate(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value)


def outputs_from_result(result: Any) -> dict[str, str]:
    """The string outputs derived from a JSON-ready mapping result (see the module docstring)."""
    if not isinstance(result, Mapping):
        return {}
    outputs: dict[str, str] = {}
    for key, value in result.items():
        if not isinstance(key, str) or not is_valid_token(key):
            continue
        if isinstance(value, str):
            outputs[key] = value
        elif isinstance(value, bool | int | float):
            outputs[key] = orjson.dumps(value).decode()
    return outputs
