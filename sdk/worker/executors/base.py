"""The executor contract: run one attempt of a job, return what happened, never raise for it.

An ``Executor`` turns a ``JobSpec`` and a ``JobContext`` into one ``ExecutionResult``:

- ``Succeeded(outputs, result)`` - report ``JobSucceeded``;
- ``Failed(error, retryable, timed_out)`` - report ``JobFailed``;
- ``Cancelled(reason)`` - the job was cancelled and has stopped; report it;
- ``Parked(after, outputs)`` - a handler's ``InProgress``: report ``JobParked``;
- ``Abandoned(reason)`` - the lease was lost and the job has stopped; report **nothing**, the
  job belongs to another attempt now.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

from events.catalog import JobSpec
from events.tasks import cancel_and_wait
from sdk.worker.job_context import JobContext

MAX_ERROR_CHARS: Final = 4096
"""Error messages are cut to this many characters (keeping the end, where the cause is)."""


@dataclass(frozen=True, slots=True)
class Succeeded:
    outputs: dict[str, str] = field(default_factory=dict)
    result: Any = None
    kind: Literal["succeeded"] = "succeeded"

    @property
    def reportable(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Failed:
    error: str
    retryable: bool = True
    timed_out: bool = False
    kind: Literal["failed"] = "failed"

    @property
    def reportable(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Cancelled:
    reason: str = "cancelled"
    kind: Literal["cancelled"] = "cancelled"

    @property
    def reportable(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The worker lost the job's lease; its result must not be reported."""

    reason: str = "lease lost"
    kind: Literal["abandoned"] = "abandoned"

    @property
    def reportable(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Parked:
    """The handler returned ``InProgress``: park the job, look again ``after`` seconds later."""

    after: float
    outputs: dict[str, str] = field(default_factory=dict)
    kind: Literal["parked"] = "parked"

    @property
    def reportable(self) -> bool:
        return True


ExecutionResult = Succeeded | Failed | Cancelled | Abandoned | Parked


class Executor(Protocol):
    """Runs one attempt of a job. Expected failures are results, not exceptions."""

    async def execute(self, spec: JobSpec, ctx: JobContext) -> ExecutionResult: ...


class Interrupt(enum.Enum):
    """Why supervision stopped the work before it finished."""

    LEASE_LOST = "lease lost"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"

    def result(self, ctx: JobContext, timeout: float | None) -> ExecutionResult:
        if self is Interrupt.LEASE_LOST:
            return Abandoned(f"worker {ctx.worker_id or '?'} lost the lease")
        if self is Interrupt.CANCELLED:
            return Cancelled(ctx.cancel_reason or "cancelled")
        return Failed(f"timed out after {timeout:g}s", retryable=True, timed_out=True)


async def supervise(
    work: asyncio.Future[Any], ctx: JobContext, *, timeout: float | None
) -> Interrupt | None:
    """Wait for ``work``, the job's stop signals, or ``timeout`` seconds, whichever comes first.

    Returns ``None`` when ``work`` finished, else why it must be stopped (the caller stops it).
    A lost lease outranks everything: a result the worker no longer owns is never reported.
    If the caller is cancelled, ``work`` is cancelled too.
    """
    if not (work.done() or ctx.is_cancelled):
        await _first_of(work, ctx, timeout)
    if ctx.lease_lost.is_set():
        return Interrupt.LEASE_LOST
    if work.done():
        return None
    if ctx.cancelled.is_set():
        return Interrupt.CANCELLED
    return Interrupt.TIMED_OUT


async def _first_of(work: asyncio.Future[Any], ctx: JobContext, timeout: float | None) -> None:
    """Until ``work`` ends, the job is stopped or ``timeout`` passes: one future woken by
    callbacks (a task per stop event and ``asyncio.wait`` cost the hot path ~10 µs more a job,
    measured)."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()

    def wake(*_: object) -> None:
        if not woken.done():
            woken.set_result(None)

    work.add_done_callback(wake)
    forget = ctx.on_stop(wake)
    timer = loop.call_later(timeout, wake) if timeout is not None and timeout > 0 else None
    try:
        await woken
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        forget()
        work.remove_done_callback(wake)
        if timer is not None:
            timer.cancel()


async def settle(work: asyncio.Future[Any], *, grace: float) -> bool:
    """Cancel ``work`` and wait up to ``grace`` seconds for it to end; True if it ended.

    A handler may swallow one cancellation (see ``events/tasks.py``): it is cancelled again
    until it ends or the grace is over.
    """
    if isinstance(work, asyncio.Task):
        return await cancel_and_wait(work, timeout=grace, what="handler", quiet=True)
    work.cancel()
    await asyncio.wait({work}, timeout=grace)
    return work.done()


def outputs_size(outputs: Mapping[str, str]) -> int:
    """Bytes that ``outputs`` weigh against ``max_output_bytes`` (UTF-8 keys plus values)."""
    return sum(len(k.encode()) + len(v.encode("utf-8", "replace")) for k, v in outputs.items())


def too_large(what: str, size: int, limit: int) -> Failed:
    """The permanent failure for outputs or results over ``max_output_bytes``."""
    return Failed(
        f"{what} are {size} bytes, over the worker's max_output_bytes of {limit}; "
        "store large data elsewhere (object store, file) and output a reference",
        retryable=False,
    )


def clip_error(message: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``message`` cut to ``limit`` characters, keeping its first line and its end."""
    if len(message) <= limit:
        return message
    head, _, _ = message.partition("\n")
    head = head[: limit // 4]
    tail = message[-(limit - len(head) - 8) :]
    return f"{head}\n…\n{tail}"
