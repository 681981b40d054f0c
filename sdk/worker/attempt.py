"""One dispatch on this worker: claim the job, run it under its lease, report, ack.

The dispatched message is the job's ``JobQueued`` event itself, delivered by its label set's
consumer on the events stream (``events.dispatch``).

- **Claim**: take the job actor's state from the event (or read it), decide ``ClaimJob`` and
  append it under CAS (``sdk.worker.claims``: a conflict reloads and decides again). A job queued
  for later (``not_before``) is released until it is due. A refused claim is dropped; its
  message is acked unless another worker holds it (acks are not fenced by JetStream: acking a
  redelivered message would take it away from its current holder).
- **Run**: the executor gets a ``JobContext``; a watcher checks the job actor every
  ``cancellation_check_interval`` (or at once on a cancel notice) for ``JobCancelRequested``
  (cancel the run) or a newer claim (lease lost: stop, report nothing, do not ack); it stops by
  itself when the run ends (``watch.py``). ``phase`` and ``ctx.ended_at`` let the worker's
  watchdog see an attempt that does not move on after its job ended.
- **Report**: the result is decided on the state known so far and appended under CAS; a
  conflict reloads and decides again, so the decision is always made on the current log. A
  stale epoch is recorded as ``JobResultRejected`` (the fencing). Then the message is acked.

Acking, releasing and dead-lettering the message is ``DispatchMessage`` (``dispatch_message.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from actors._state import updated
from actors.job import JobState
from events.catalog import JobEvent, JobResultRejected
from events.catalog import JobStarted as ClaimEvent
from events.direct_get import DirectReader
from events.dispatch import InvalidDispatch
from events.errors import ConcurrencyConflict, JetworkError, PayloadTooLarge, StoreError
from events.store import ActorRef, EventStore
from sdk.worker.claims import (
    Action,
    Dispatch,
    ResultCommand,
    append_claimed_result,
    claim_dispatch,
    claim_id,
    claim_locally,
    load_job,
    now,
    record_result,
    refresh,
)
from sdk.worker.concurrency import RECHECK as GROUP_RECHECK
from sdk.worker.concurrency import ConcurrencyGroups, Holder, group_key
from sdk.worker.config import WorkerConfig
from sdk.worker.dispatch_message import DispatchMessage
from sdk.worker.executors import ExecutionResult, Executor, Failed, Parked, Succeeded
from sdk.worker.group_line import runs_elsewhere
from sdk.worker.job_context import JobContext
from sdk.worker.lifecycle import AttemptRef, JobEnded, JobStarted, LeaseLost, Listeners, ended
from sdk.worker.log_buffer import LogBuffer
from sdk.worker.logs import HEADER_MARGIN, attempt_log
from sdk.worker.presence import RunningJob
from sdk.worker.progress import ProgressStream, progress_stream
from sdk.worker.rate_limits import RateLimiter
from sdk.worker.results import held_by_another, result_command
from sdk.worker.revoked import Revoked
from sdk.worker.watch import STOP_TIMEOUT as WATCHER_STOP_TIMEOUT
from sdk.worker.watch import Watcher

STUCK_AFTER: Final = WATCHER_STOP_TIMEOUT + 1.0
"""Seconds an attempt may take from its job's end to its logs and report (see ``stuck_for``)."""
LOG_GIVE_UP_AFTER: Final = 60.0
"""Seconds a log batch is retried at most (while the lease holds) before it is counted lost."""

Phase = Literal["claiming", "running", "finishing", "flushing", "reporting", "done"]

_log = structlog.get_logger("jetwork.worker")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptEnv:
    """What every attempt of one worker shares."""

    worker_id: str
    config: WorkerConfig
    nc: NATS
    js: JetStreamContext
    store: EventStore
    executor: Executor
    aborting: Callable[[], bool]
    listeners: Listeners
    limiter: RateLimiter
    groups: ConcurrencyGroups
    logs_reader: DirectReader | None = None  # JW_LOGS: where a parked job's progress resumes
    revoked: Revoked = field(default_factory=Revoked)  # who may run before its claim is appended


class _ClaimVoid(Exception):
    """The run's claim, decided before it ran and appended after, was refused by the log."""


class Attempt(DispatchMessage):
    """The life of one dispatch message on this worker."""

    def __init__(
        self,
        env: AttemptEnv,
        msg: Msg,
        *,
        lease_ttl: float,
        config: WorkerConfig | None = None,
        executor: Executor | None = None,
        release_slot: Callable[[], None] = lambda: None,
    ) -> None:
        self.env = env
        self.msg = msg
        self.lease_ttl = lease_ttl
        self.config = env.config if config is None else config
        """The settings of this job's handler (``WorkerConfig.for_handler``) or the worker's."""
        self.executor = env.executor if executor is None else executor
        self._release_slot = release_slot
        """Frees the execution slot: called once the job stopped running (before reporting)."""
        meta = msg.metadata
        self.delivery: int = meta.num_delivered
        self.dispatch_seq: int = meta.sequence.stream
        self.dispatch: Dispatch | None = None
        self.state: JobState | None = None
        self.epoch: int | None = None
        self.ctx: JobContext | None = None
        self.heartbeat_ok_at = time.monotonic()
        self.settled = False
        """Acked, released or abandoned: no more heartbeats for this message."""
        self.phase: Phase = "claiming"
        self._lost: str | None = None
        self._ack_when_abandoned = False
        self._check_at_once = False  # a cancel notice arrived before the run started
        self._holder: Holder | None = None  # this attempt's slot of its concurrency group
        self._quota_slot: tuple[str, Holder] | None = None  # of its namespace's running jobs
        self._watcher: Watcher | None = None
        self._unclaimed: ClaimEvent | None = None
        """The claim decided but not appended yet (``claim_window``): see ``_claim_later``."""
        self._claiming: asyncio.Task[bool] | None = None
        self._claim_due: asyncio.TimerHandle | None = None
        self._log: Any = _log.bind(worker_id=env.worker_id, dispatch_seq=self.dispatch_seq)

    @property
    def ref(self) -> AttemptRef:
        """This attempt, as lifecycle listeners see it (once claimed)."""
        assert self.dispatch is not None and self.state is not None and self.epoch is not None
        return AttemptRef(
            workflow_id=self.dispatch.workflow_id,
            job=self.dispatch.job,
            attempt=self.state.attempt,
            epoch=self.epoch,
            handler=self.dispatch.queued.spec.uses or "shell",
            worker_id=self.env.worker_id,
            traceparent=self.dispatch.queued.spec.traceparent,
        )

    def _ended(self, event: JobEnded) -> None:
        self.env.listeners.emit(f"job_{event.outcome}", event)  # type: ignore[arg-type]

    @property
    def key(self) -> tuple[str, str] | None:
        return (self.dispatch.workflow_id, self.dispatch.job) if self.dispatch else None

    @property
    def actor(self) -> ActorRef:
        assert self.dispatch is not None
        return ActorRef.job(self.dispatch.workflow_id, self.dispatch.job)

    @property
    def running_job(self) -> RunningJob | None:
        """What presence shows of this attempt once it is claimed."""
        if self.state is None or self.epoch is None:
            return None
        return RunningJob(
            workflow_id=self.state.workflow_id,
            job=self.state.job,
            attempt=self.state.attempt,
            epoch=self.epoch,
        )

    def check_now(self) -> None:
        """Look at the job actor now (a cancel notice arrived)."""
        if self._watcher is not None:
            self._watcher.poke()
        else:
            self._check_at_once = True

    def give_up(self, reason: str) -> None:
        """Stop holding this job: the run stops, nothing is reported, no more heartbeats, and
        the message is released at once for another delivery (the watchdog, an abort)."""
        self.lose_lease(reason)
        self._release_slot()
        if not self.settled:
            self.settled = True
            asyncio.get_running_loop().create_task(self._nak_now())

    def stuck_for(self, now: float) -> float | None:
        """Seconds since the job's work ended (``ctx.ended_at``) while this attempt has still
        not moved on to its logs and report; None while it is not stuck."""
        ended = self.ctx.ended_at if self.ctx is not None else None
        if ended is None or self.phase not in ("running", "finishing"):
            return None
        late = now - ended
        return late if late > STUCK_AFTER else None

    def _enter(self, phase: Phase) -> None:
        self.phase = phase

    def lose_lease(self, reason: str) -> None:
        """Stop the run; nothing will be reported and the message is not acked."""
        if self._lost is None:
            self._lost = reason
            if self.epoch is not None:
                self.env.listeners.emit("lease_lost", LeaseLost(self.ref, reason))
        if self.ctx is not None:
            self.ctx.mark_lease_lost()

    async def run(self) -> None:
        try:
            self.dispatch = Dispatch.decode(self.msg)
        except InvalidDispatch as exc:
            await self._dead_letter(str(exc))
            return
        self._log = self._log.bind(workflow_id=self.dispatch.workflow_id, job=self.dispatch.job)
        try:
            if (
                await self._not_due_yet()
                or await self._rate_limited()
                or not await self._enter_group()
                or not await self._claim()
            ):
                return
            started = time.monotonic()
            result = await self._execute()
            # The job no longer runs: its slot may take the next one while this one reports.
            self._release_slot()
            self._enter("reporting")
            if not result.reportable or self._lost is not None:
                self._ended(JobEnded(self.ref, "abandoned", duration=None))
                self._log.warning("job abandoned", epoch=self.epoch, reason=self._lost or "")
                if self._ack_when_abandoned:
                    await self._ack()
                self.settled = True
                return
            await self._report(result, time.monotonic() - started)
        finally:
            await self._leave_group()
            self.settled = True
            self._enter("done")
            # Nothing reads them once the attempt is done, and they refer back to it (the log
            # buffer's keep_trying, the watcher's callbacks): dropped, the attempt and what it
            # made are freed by reference counting instead of waiting for the collector.
            self.ctx = None
            self._watcher = None

    # --- claim ---------------------------------------------------------------------------------

    async def _not_due_yet(self) -> bool:
        """True (and the message released until then) for a job queued for later."""
        assert self.dispatch is not None
        not_before = self.dispatch.queued.not_before
        if not_before is None:
            return False
        wait = (not_before - now()).total_seconds()
        if wait <= 0:
            return False
        self.settled = True
        with contextlib.suppress(Exception):
            await self.msg.nak(delay=wait)
        return True

    async def _rate_limited(self) -> bool:
        """True (and the message released for a while) when a rate limit's window is full."""
        assert self.dispatch is not None
        refusal = await self.env.limiter.admit(self.dispatch.queued.spec)
        if refusal is None:
            return False
        self._log.debug("rate limited", limit=refusal.key, wait=round(refusal.wait, 3))
        self.settled = True
        with contextlib.suppress(Exception):
            await self.msg.nak(delay=refusal.wait)
        return True

    async def _enter_group(self) -> bool:
        """True once this attempt holds a slot of its concurrency group (or it has none); else
        the message is released and tried again shortly."""
        assert self.dispatch is not None
        spec = self.dispatch.queued.spec
        quota = await self.env.groups.quotas.slot(spec)
        if spec.concurrency is None and quota is None:
            return True
        holder = Holder(workflow_id=self.dispatch.workflow_id, job=self.dispatch.job,
                        attempt=self.dispatch.queued.attempt, worker_id=self.env.worker_id,
                        since=time.time(), seq=self.dispatch_seq,
                        queued_at=self.dispatch.queued.queued_at.timestamp())  # fmt: skip
        if quota is not None:
            if not await self.env.groups.take(*quota, holder):
                self._log.debug("waiting for its namespace's job quota", namespace=spec.namespace)
                return await self._wait_for_group()
            self._quota_slot = (quota[0], holder)
        if spec.concurrency is None:
            return True
        entry = await self.env.groups.enter(spec, holder)
        if entry == "held":
            self._holder = holder
            return True
        await self._leave_group()  # the namespace's slot back: its group has none for it
        if entry == "withdrawn":  # superseded while it waited: its job is done with it
            self._log.info("superseded while waiting", group=spec.concurrency.group)
            await self._ack()
            return False
        self._log.debug("waiting for its concurrency group", group=spec.concurrency.group)
        return await self._wait_for_group()

    async def _wait_for_group(self) -> bool:
        """Release the message to be offered again shortly (False: not entered)."""
        self.settled = True
        with contextlib.suppress(Exception):
            await self.msg.nak(delay=GROUP_RECHECK)
        return False

    async def _leave_group(self) -> None:
        quota, self._quota_slot = self._quota_slot, None
        if quota is not None:
            try:
                await self.env.groups.leave(*quota)
            except Exception as exc:  # a stale slot is found and dropped by the next one waiting
                self._log.warning("namespace quota slot not given back", error=repr(exc))
        holder, self._holder = self._holder, None
        group = group_key(self.dispatch.queued.spec) if self.dispatch is not None else None
        if holder is not None and group is not None:
            try:
                await self.env.groups.leave(group, holder)
            except Exception as exc:  # a stale slot is found and dropped by the next one waiting
                self._log.warning("concurrency slot not given back", error=repr(exc))

    async def _claim(self) -> bool:
        assert self.dispatch is not None
        if self._claim_later():
            return self._granted(took_over=False)
        outcome = await claim_dispatch(
            self.env.store,
            self.dispatch,
            worker_id=self.env.worker_id,
            delivery=self.delivery,
            dispatch_seq=self.dispatch_seq,
            lease_ttl=self.lease_ttl,
        )
        self.state = outcome.state
        if not outcome.claimed and runs_elsewhere(outcome.state, self.dispatch.queued.attempt):
            self._holder = self._quota_slot = None  # its slots are the running claim's now
        if outcome.claimed:
            return self._granted(took_over=outcome.took_over)
        match outcome.action:
            case Action.ACK:
                if outcome.cancelled:
                    self._log.info("job cancelled before it ran again")
                else:
                    self._log.info("dispatch dropped", reason=outcome.reason)
                await self._ack()
            case Action.KEEP:
                self._log.info("stale delivery dropped", reason=outcome.reason)
            case Action.DEAD_LETTER:
                await self._dead_letter(outcome.reason)
            case _:
                self._log.warning("claim refused for now, releasing", reason=outcome.reason)
                await self._release()
        return False

    def _granted(self, *, took_over: bool) -> bool:
        """This attempt runs the job under ``self.state``'s epoch (claimed, or to be)."""
        assert self.dispatch is not None and self.state is not None
        self.epoch = self.state.epoch
        self._log = self._log.bind(attempt=self.state.attempt, epoch=self.epoch)
        self._log.debug("job claimed", delivery=self.delivery, lease_ttl=self.lease_ttl,
                        appended=self._unclaimed is None)  # fmt: skip
        waited = (now() - self.dispatch.queued.claimable_from()).total_seconds()
        started = JobStarted(self.ref, waited=waited, took_over=took_over)
        self.env.listeners.emit("job_started", started)
        return True

    # --- run -----------------------------------------------------------------------------------

    async def _execute(self) -> ExecutionResult:
        assert self.dispatch is not None and self.state is not None and self.epoch is not None
        state = self.state
        logs = self._log_buffer(state)
        progress = await self._progress_stream(state)
        ctx = JobContext(
            workflow_id=state.workflow_id,
            job=state.job,
            attempt=state.attempt,
            epoch=self.epoch,
            worker_id=self.env.worker_id,
            upstream_outputs=state.spec.upstream_outputs,
            log_sink=logs,
            poll_count=state.poll_count,
            progress_outputs=dict(state.outputs) if state.poll_count else {},
            progress_sink=progress,
        )
        self.ctx = ctx
        if self._lost is not None or self.env.aborting():
            self.lose_lease(self._lost or "the worker is aborting")
        watcher = self._watcher = Watcher(
            ctx,
            epoch=self.epoch,
            interval=self.config.cancellation_check_interval,
            refresh=self._refreshed,
            moved_on=self._moved_on,
            log=self._log,
        )
        if self._check_at_once:  # a cancel notice arrived while claiming
            watcher.poke()
        if self._unclaimed is not None:
            loop = asyncio.get_running_loop()
            self._claim_due = loop.call_later(self.config.claim_window, self._start_claiming)
        self._enter("running")
        try:
            result = await self.executor.execute(state.spec, ctx)
        except Exception as exc:  # executors return failures; this is a bug, fail retryably
            self._log.exception("executor raised")
            result = Failed(f"the worker's executor raised {exc!r}", retryable=True)
        finally:
            ctx.mark_ended()
            if self._claim_due is not None:
                self._claim_due.cancel()
                self._claim_due = None
            self._enter("finishing")
            await watcher.stop()
            self._enter("flushing")
            await logs.close()
            await progress.close()
        return result

    async def _progress_stream(self, state: JobState) -> ProgressStream:
        assert self.epoch is not None
        return await progress_stream(
            self.env.js,
            self.env.logs_reader,
            workflow_id=state.workflow_id,
            job=state.job,
            attempt=state.attempt,
            epoch=self.epoch,
            worker_id=self.env.worker_id,
            limit=int(self.env.nc.max_payload) - HEADER_MARGIN,
            poll_count=state.poll_count,
            claimed=self._claimed if self._unclaimed is not None else None,
        )

    def _log_buffer(self, state: JobState) -> LogBuffer:
        assert self.epoch is not None
        return attempt_log(
            self.env.js,
            self.config,
            workflow_id=state.workflow_id,
            job=state.job,
            attempt=state.attempt,
            epoch=self.epoch,
            worker_id=self.env.worker_id,
            max_payload=int(self.env.nc.max_payload),
            keep_trying=lambda: self._lost is None,
            give_up_after=max(LOG_GIVE_UP_AFTER, self.lease_ttl),
            claimed=self._claimed if self._unclaimed is not None else None,
        )

    async def _refreshed(self) -> JobState:
        if await self._claimed():
            await self._refresh()
        assert self.state is not None
        return self.state

    def _moved_on(self, state: JobState) -> None:
        # Ended by someone else (the engine's timeout, a cancel on redelivery) or claimed
        # again. Only in the latter case does another worker hold this message.
        self._ack_when_abandoned = not held_by_another(state, self.dispatch_seq, self.epoch)
        self.lose_lease(
            f"the job moved on without this worker (epoch {state.epoch}, {state.status})"
        )

    async def _refresh(self) -> None:
        """Fold the job actor's newer events, if any, onto the known state."""
        assert self.state is not None
        self.state = await refresh(self.env.store, self.state)

    # --- report --------------------------------------------------------------------------------

    async def _report(self, result: ExecutionResult, seconds: float) -> None:
        delay = 0.1
        while True:
            if self._lost is not None:
                self._log.warning("job abandoned before its result was recorded", reason=self._lost)
                return
            try:
                events = await self._record(result)
                break
            except _ClaimVoid:
                self._ended(JobEnded(self.ref, "abandoned", duration=None))
                self._log.warning("job ran, but its claim did not count", reason=self._lost or "")
                if self._ack_when_abandoned:
                    await self._ack()
                return
            except PayloadTooLarge as exc:
                result = Failed(str(exc), retryable=False)
            except StoreError as exc:
                if not exc.retryable:
                    self._log.error("cannot record the result", error=str(exc))
                    return
                self._log.warning("recording the result failed, retrying", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        assert self.state is not None
        rejected = [e for e in events if isinstance(e, JobResultRejected)]
        self._ended(ended(self.ref, result, events, seconds=seconds))
        if rejected:
            self._log.warning("job result rejected", outcome=result.kind, reason=rejected[0].reason)
            if held_by_another(self.state, self.dispatch_seq, self.epoch):
                return
        else:
            # Successes at debug: a busy worker tells them in ``Tally``'s periodic line.
            log = self._log.debug if isinstance(result, Succeeded | Parked) else self._log.info
            log(
                "job finished",
                outcome=result.kind,
                seconds=round(seconds, 3),
                **({"error": result.error[:200]} if isinstance(result, Failed) else {}),
            )
        await self._ack()

    async def _record(self, result: ExecutionResult) -> list[JobEvent]:
        assert self.dispatch is not None and self.epoch is not None and self.state is not None
        command = result_command(
            result,
            workflow_id=self.dispatch.workflow_id,
            job=self.dispatch.job,
            epoch=self.epoch,
            worker_id=self.env.worker_id,
            now=now(),
        )
        if self._unclaimed is not None and self._claiming is None:
            recorded = await self._record_with_claim(self._unclaimed, command)
            if recorded is not None:
                return recorded
        if not await self._claimed():
            raise _ClaimVoid
        events, self.state = await record_result(self.env.store, self.state, command)
        return events

    async def _record_with_claim(
        self, started: ClaimEvent, command: ResultCommand
    ) -> list[JobEvent] | None:
        """Append the result with its claim inside (one write); None when it cannot carry it.
        Raises ``_ClaimVoid`` when the log moved since the dispatch: the claim did not count."""
        assert self.dispatch is not None and self.state is not None
        try:
            recorded = await append_claimed_result(
                self.env.store, self.dispatch, started, self.state, command
            )
        except ConcurrencyConflict:
            await self._claim_refused()
            raise _ClaimVoid from None
        if recorded is None:
            return None
        self._unclaimed = None
        events, self.state = recorded
        return events

    # --- a claim appended later (``claim_window``) ---------------------------------------------

    def _claim_later(self) -> bool:
        """Decide this first delivery's claim now and append it only if the run outlasts
        ``claim_window``: a shorter run appends it inside its result (``_record_with_claim``),
        one write instead of two. The dispatch's ack deadline is the lease either way; until the
        claim is appended the log shows the job queued, so what must not happen under an
        unrecorded claim (logs, progress, a cancel check) appends it first (``_claimed``)."""
        assert self.dispatch is not None
        if (
            self.config.claim_window <= 0
            or self.delivery != 1
            or self._holder is not None
            or self._quota_slot is not None
            or not self.env.revoked.may_run_unclaimed(
                self.dispatch.workflow_id, self.dispatch.job, self.dispatch_seq
            )
        ):
            return False
        local = claim_locally(
            self.dispatch,
            worker_id=self.env.worker_id,
            delivery=self.delivery,
            dispatch_seq=self.dispatch_seq,
            lease_ttl=self.lease_ttl,
        )
        if local is None:
            return False
        self._unclaimed, self.state = local
        return True

    def _start_claiming(self) -> None:
        if self._unclaimed is not None and self._claiming is None:
            self._claiming = asyncio.get_running_loop().create_task(self._append_claim())

    async def _claimed(self) -> bool:
        """True once this run's claim is in the log (appending it now if it waits); False when
        the log refused it (the lease is then lost: the run does not count)."""
        self._start_claiming()
        claiming = self._claiming
        return True if claiming is None else await asyncio.shield(claiming)

    async def _append_claim(self) -> bool:
        started, state = self._unclaimed, self.state
        assert started is not None and state is not None and self.dispatch is not None
        command_id = claim_id(self.dispatch, dispatch_seq=self.dispatch_seq, delivery=self.delivery)
        try:
            seq = await self.env.store.append(
                self.actor, [started], expected_seq=self.dispatch_seq, command_id=command_id
            )
        except ConcurrencyConflict:
            await self._claim_refused()
            return False
        except JetworkError as exc:  # the store kept failing: the message goes back at its lease
            self._unclaimed = None
            self.lose_lease(f"its claim could not be recorded: {exc}")
            return False
        self._unclaimed = None
        self.state = updated(state, last_seq=seq)
        return True

    async def _claim_refused(self) -> None:
        """The log moved since the dispatch (a cancel, an end decided elsewhere): the claim
        that waited does not count. Stop the run; ack the message unless another holds it."""
        self._unclaimed = None
        try:
            assert self.dispatch is not None
            state = await load_job(self.env.store, self.dispatch, dispatch_seq=self.dispatch_seq)
        except JetworkError as exc:
            self.lose_lease(f"its claim was refused, and the job cannot be read: {exc}")
            return
        if state is not None:
            self.state = state
            self._moved_on(state)
        else:
            self.lose_lease("its claim was refused")
