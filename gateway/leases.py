"""Jobs for HTTP workers: claim one for some labels under a lease, and the lease's operations.

This is the one place that knows how jobs are dispatched (``OneShotPuller`` on the label set
consumers: ``JobQueued`` events on ``JW_EVENTS``) and how an HTTP worker's lease is kept, so a
change of the dispatch path touches this module only. The rest of the gateway sees
``Leases.claim`` and ``LeaseHandle`` (``heartbeat``, ``push_logs``, ``complete``, ``fail``).

**How the lease is kept** is ``gateway.keeping``: by the dispatch's ack deadline when the claim's
``lease_ttl_secs`` is its consumer's ack wait (the dispatch stays unacked, its ack subject in the
lease id), else by a durable timer of the workflow's partition (the dispatch is acked once the
timer is armed). A claim pulls one dispatch, appends ``JobStarted`` (``lease_ttl`` = the worker's
``lease_ttl_secs``) under the job actor's CAS, then holds the lease. The gateway holds nothing
between calls, so any gateway serves any call and a killed gateway loses no job:

- killed before the claim is appended: the dispatch is delivered again after the consumer's ack
  wait;
- after the append, before the lease is held: the same, and that delivery's claim takes over;
- kept by the deadline, at any time: the dispatch stays unacked until an accepted result, so it
  is delivered again when the deadline lapses unless some gateway renewed it meanwhile;
- kept by a timer, after the timer, before the ack: whichever comes first (the redelivery or the
  expiry) takes over, the other one finds its epoch gone and is dropped;
- once the worker has its answer: the lease runs on; its next call is served by any gateway.

Heartbeats, log pushes and results are checked against the job actor first (its newest event,
or its whole history when that is not this lease's ``JobStarted``): a lease that is no longer
current answers ``LeaseGone`` (409) and changes nothing, except that a late result is recorded as
``JobResultRejected`` by the job actor, as for NATS workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from actors._state import updated
from actors.commands import CompleteJob, ConfirmCancelled, FailJob
from actors.job import JobState, pending, replay
from events import subjects
from events.catalog import JobResultRejected, JobStarted, JobStatus
from events.dispatch import InvalidDispatch, LabelSet
from events.errors import JetworkError, StoreError
from events.store import ActorRef, EventStore
from gateway import observed
from gateway.keeping import LeaseKeeping, kept_by_deadline, quietly
from gateway.labelsets import LabelSets
from gateway.lease_ids import LeaseId, LeaseSigner
from gateway.observed import attempt_ref, observed_gateway
from gateway.pulling import OneShotPuller
from sdk.worker import lifecycle
from sdk.worker.claims import Action, ClaimOutcome, Dispatch, claim_dispatch, now, record_result
from sdk.worker.concurrency import RECHECK as GROUP_RECHECK
from sdk.worker.concurrency import ConcurrencyGroups, Holder, group_key
from sdk.worker.control_keys import watched_again
from sdk.worker.executors.base import clip_error
from sdk.worker.group_line import runs_elsewhere
from sdk.worker.log_buffer import LogChunk
from sdk.worker.logs import log_publisher
from sdk.worker.rate_limits import RateLimiter

_log = structlog.get_logger("jetwork.gateway")
RELEASE_DELAY: Final = 1.0
"""Seconds before a dispatch given back (the log was behind) is delivered again."""
NO_WAIT_PULLS: Final = 8
"""Dispatches one claim without ``wait_secs`` may go through (stale ones are dropped)."""
DEAD_LETTER_SOURCE: Final = "dispatch"
GONE_CHECK_AFTER: Final = 0.5
"""Seconds a claim waited before it asks whether its caller is still there."""


class LeaseGone(JetworkError):
    """The lease is no longer current (expired and taken over, the job cancelled or ended)."""


class LeaseUnknown(JetworkError):
    """No lease has this id (malformed, or signed with another key)."""


@dataclass(frozen=True, slots=True)
class Claim:
    lease_id: str
    lease: LeaseId
    state: JobState
    """The job after the claim: spec, attempt, epoch, upstream outputs."""


GoneCheck = Callable[[], Awaitable[bool]]


class Leases:
    def __init__(
        self, nc: NATS, *, labelsets: LabelSets, signer: LeaseSigner, consumer_lease: float
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._store = EventStore(nc)
        self._labelsets = labelsets
        self._signer = signer
        self._puller = OneShotPuller(nc, consumer_lease=consumer_lease)
        self.keeping = LeaseKeeping(nc)
        self.limiter = RateLimiter()
        self.groups = ConcurrencyGroups()
        self.listeners = observed_gateway()
        self._watching_again: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> EventStore:
        return self._store

    async def start(self) -> None:
        await self.limiter.start(self._js)
        notify = functools.partial(self._nc.publish, payload=b"")
        await self.groups.start(self._js, self._store, notify=notify)

    def watch_again(self) -> None:
        """After a reconnection (the connection's ``on_reconnect``): the label sets and the
        operators' rate limits are watched afresh, as a worker's are: nats-py's KV watches do
        not always come back after a server restart (``sdk/worker/control_keys.py``)."""
        for what, again in (
            ("the label sets", self._labelsets.watch_again),
            ("the rate limits", functools.partial(self.limiter.watch_again, self._js)),
        ):
            task = asyncio.get_running_loop().create_task(watched_again(what, again, log=_log))
            self._watching_again.add(task)
            task.add_done_callback(self._watching_again.discard)

    async def stop(self) -> None:
        """Stop pulling (what the server still sends is released)."""
        await self._puller.stop()
        await self.limiter.stop()

    # --- claims --------------------------------------------------------------------------------

    async def claim(
        self,
        *,
        worker_id: str,
        capabilities: frozenset[str],
        lease_ttl: float,
        wait: float,
        gone: GoneCheck | None = None,
    ) -> Claim | None:
        """A job whose requirements ``capabilities`` cover, claimed under a lease of
        ``lease_ttl`` seconds; None when none came within ``wait`` seconds (0: look once)."""
        started = time.monotonic()
        deadline = started + wait
        pulls = 0
        while True:
            remaining = deadline - time.monotonic()
            labelsets = self._labelsets.serving(capabilities)
            if not labelsets:
                if remaining <= 0:
                    return None
                await self._labelsets.wait_changed(remaining)
                continue
            pulled = await self._puller.pull_one(labelsets, wait=max(0.0, remaining))
            pulls += 1
            if pulled is None:
                if remaining <= 0 or time.monotonic() >= deadline:
                    return None
                continue
            msg = pulled.msg
            # Only a claim that waited may have lost its caller meanwhile (the check costs).
            waited = time.monotonic() - started
            if gone is not None and waited >= GONE_CHECK_AFTER and await gone():
                await quietly(msg.nak())  # never claimed: at once for someone else
                return None
            claim = await self._claim_message(
                msg, worker_id=worker_id, lease_ttl=lease_ttl, kept=pulled.kept
            )
            if claim is not None:
                return claim
            if wait <= 0 and pulls >= NO_WAIT_PULLS:
                return None
            if wait > 0 and time.monotonic() >= deadline:
                return None

    async def _claim_message(
        self, msg: Msg, *, worker_id: str, lease_ttl: float, kept: float
    ) -> Claim | None:
        meta = msg.metadata
        try:
            dispatch = Dispatch.decode(msg)
        except InvalidDispatch as exc:
            await self._dead_letter(msg, str(exc))
            return None
        if dispatch.queued.not_before is not None and dispatch.queued.not_before > now():
            wait = (dispatch.queued.not_before - now()).total_seconds()
            await quietly(msg.nak(delay=wait))  # queued for later: not claimable yet
            return None
        refusal = await self.limiter.admit(dispatch.queued.spec)
        if refusal is not None:  # a rate limit's window is full: again when it may be free
            await quietly(msg.nak(delay=refusal.wait))
            return None
        holder = group_holder(dispatch, worker_id, meta.sequence.stream)
        entry = await self.groups.enter(dispatch.queued.spec, holder)
        if entry == "withdrawn":  # superseded while it waited: its job is done with it
            await quietly(msg.ack())
            return None
        if entry == "waiting":  # its place in its concurrency group's line is kept
            await quietly(msg.nak(delay=GROUP_RECHECK))
            return None
        quota = await self.groups.quotas.slot(dispatch.queued.spec)
        if quota is not None and not await self.groups.take(*quota, holder):
            if (key := group_key(dispatch.queued.spec)) is not None:
                await self.groups.leave(key, holder)
            await quietly(msg.nak(delay=GROUP_RECHECK))  # its namespace runs its quota of jobs
            return None
        labelset = dispatch.queued.labelset_token
        outcome = await claim_dispatch(
            self._store,
            dispatch,
            worker_id=worker_id,
            delivery=meta.num_delivered,
            dispatch_seq=meta.sequence.stream,
            lease_ttl=lease_ttl,
        )
        if not outcome.claimed:
            if not runs_elsewhere(outcome.state, dispatch.queued.attempt):  # else: its slots
                if (key := group_key(dispatch.queued.spec)) is not None:
                    await self.groups.leave(key, holder)
                if quota is not None:
                    await self.groups.leave(quota[0], holder)
            await self._settle(msg, outcome)
            return None
        state = outcome.state
        assert state is not None
        granted = now()
        by_deadline = kept_by_deadline(
            lease_ttl=lease_ttl, ack_wait=self._puller.ack_wait(meta.consumer)
        )
        lease = LeaseId(
            workflow_id=state.workflow_id,
            job=state.job,
            attempt=state.attempt,
            epoch=state.epoch,
            worker_id=worker_id,
            labelset=labelset,
            ttl=lease_ttl,
            granted_at_ms=int(granted.timestamp() * 1000),
            dispatch_seq=meta.sequence.stream,
            claim_seq=state.last_seq,
            ack=msg.reply if by_deadline else "",
            traceparent=dispatch.queued.spec.traceparent,
            group=group_key(dispatch.queued.spec),
            quota=quota[0] if quota is not None else None,
        )
        await self.keeping.hold(msg, lease, granted, kept=kept)
        waited = (granted - dispatch.queued.claimable_from()).total_seconds()
        started = lifecycle.JobStarted(
            attempt_ref(lease), waited=waited, took_over=outcome.took_over
        )
        self.listeners.emit("job_started", started)
        return Claim(lease_id=self._signer.sign(lease), lease=lease, state=state)

    async def _settle(self, msg: Msg, outcome: ClaimOutcome) -> None:
        match outcome.action:
            case Action.ACK:
                await quietly(msg.ack())
            case Action.RELEASE:
                await quietly(msg.nak(delay=RELEASE_DELAY))
            case Action.DEAD_LETTER:
                await self._dead_letter(msg, outcome.reason)
            case _:
                pass  # another claim of this very message runs: its holder acks it

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        _log.error("undecodable dispatch moved to dead letters", reason=reason)
        headers = {
            "Jetwork-Reason": reason[:1000],
            "Jetwork-Subject": msg.subject,
            "Jetwork-Stream-Seq": str(msg.metadata.sequence.stream),
        }
        with contextlib.suppress(Exception):
            await self._js.publish(
                subjects.dead_letter(DEAD_LETTER_SOURCE), msg.data, headers=headers
            )
        await quietly(msg.term())

    # --- leases --------------------------------------------------------------------------------

    def handle(self, lease_id: str) -> LeaseHandle:
        lease = self._signer.verify(lease_id)
        if lease is None:
            raise LeaseUnknown(f"no lease has the id {lease_id[:40]!r}")
        return LeaseHandle(self, lease)

    async def _state(self, lease: LeaseId, *, whole: bool = False) -> JobState | None:
        """The job as the log has it; None for a job without events. Without ``whole``, a
        state that only says whether the lease is current, from one read when it is."""
        actor = ActorRef.job(lease.workflow_id, lease.job)
        if not whole:
            last = await self._store.last_event(actor)
            event = last.event if last is not None else None
            if isinstance(event, JobStarted) and event.epoch == lease.epoch:
                return replay([last]) if last is not None else None
        events = await self._store.load(actor)
        return replay(events) if events else None

    async def cancelled(self, workflow_id: str, job: str) -> bool | None:
        """True when the job was asked to stop or was cancelled; None when it has no events."""
        events = await self._store.load(ActorRef.job(workflow_id, job))
        if not events:
            return None
        state = replay(events)
        return state.cancel_requested or state.status is JobStatus.CANCELLED


class LeaseHandle:
    """One HTTP worker's lease, from its id. Every method checks the log first."""

    def __init__(self, leases: Leases, lease: LeaseId) -> None:
        self._leases = leases
        self.lease = lease

    async def heartbeat(self) -> datetime:
        """Renew the lease for its ``ttl``; returns the new expiry. ``LeaseGone`` if it is not
        current; a job asked to stop is confirmed cancelled here (the worker is told so)."""
        state = await self._current()
        if state.cancel_requested:
            await self._confirm_cancelled(state)
            raise LeaseGone(f"{self._what} was cancelled: {state.cancel_reason}")
        return await self._leases.keeping.renew(self.lease)

    async def push_logs(self, chunks: Sequence[LogChunk]) -> None:
        await self._current()
        publish = log_publisher(
            self._leases._js,
            workflow_id=self.lease.workflow_id,
            job=self.lease.job,
            attempt=self.lease.attempt,
            epoch=self.lease.epoch,
            worker_id=self.lease.worker_id,
            max_payload=int(self._leases._nc.max_payload),
        )
        try:
            await publish(chunks)
        except (NatsError, TimeoutError) as exc:
            raise StoreError(f"cannot store the log lines: {exc!r}", retryable=True) from None

    async def complete(self, outputs: Mapping[str, str], result: Any = None) -> None:
        command = CompleteJob(**self._ids, now=now(), outputs=dict(outputs), result=result)
        await self._record(command)

    async def fail(self, error: str, *, retryable: bool) -> None:
        command = FailJob(**self._ids, now=now(), error=clip_error(error), retryable=retryable)
        await self._record(command)

    @property
    def _what(self) -> str:
        lease = self.lease
        return f"job {lease.job} of {lease.workflow_id} (attempt {lease.attempt})"

    @property
    def _ids(self) -> dict[str, Any]:
        lease = self.lease
        return {
            "workflow_id": lease.workflow_id,
            "job": lease.job,
            "epoch": lease.epoch,
            "worker_id": lease.worker_id,
        }

    async def _current(self) -> JobState:
        state = await self._leases._state(self.lease)
        if state is None:
            raise LeaseGone(f"{self._what} has no events")
        if state.status is not JobStatus.RUNNING or state.epoch != self.lease.epoch:
            raise LeaseGone(self._gone_reason(state))
        return state

    def _gone_reason(self, state: JobState) -> str:
        if state.epoch != self.lease.epoch and state.status is JobStatus.RUNNING:
            return (
                f"the lease of {self._what} expired: epoch {state.epoch} holds it now "
                f"(this lease is epoch {self.lease.epoch})"
            )
        return f"{self._what} is {state.status}: the lease (epoch {self.lease.epoch}) has ended"

    async def _record(self, command: CompleteJob | FailJob | ConfirmCancelled) -> None:
        state: JobState | None
        if isinstance(command, CompleteJob) and self.lease.claim_seq:
            # A success is decided on the claim alone, expecting it as the actor's last event:
            # no read on the happy path; a conflict folds in what came since and decides again.
            state = self._claimed()
        else:  # a failure needs the retry policy: the whole history
            state = await self._leases._state(self.lease, whole=True)
        if state is None:
            raise LeaseGone(f"{self._what} has no events")
        events, after = await record_result(self._leases.store, state, command)
        rejected = [e for e in events if isinstance(e, JobResultRejected)]
        gone = not events and after.settled_epoch != self.lease.epoch
        await self._leases.keeping.end(self.lease, accepted=not (rejected or gone))
        await self._leave_group()
        if events:
            self._observe(command, events)
        if rejected:
            raise LeaseGone(f"result rejected: {rejected[0].reason}")
        if gone:
            raise LeaseGone(self._gone_reason(after))

    def _observe(
        self, command: CompleteJob | FailJob | ConfirmCancelled, events: list[Any]
    ) -> None:
        """Metrics and spans of an HTTP worker's result, as a worker records its own."""
        match command:
            case CompleteJob():
                result = observed.ended(self.lease, "succeeded", events)
            case FailJob(error=error):
                result = observed.ended(self.lease, "failed", events, error)
            case _:
                result = observed.ended(self.lease, "cancelled", events)
        self._leases.listeners.emit(f"job_{result.outcome}", result)  # type: ignore[arg-type]

    async def _leave_group(self) -> None:
        """Give the attempt's concurrency slot back (a stale one is dropped by the next waiter)."""
        lease = self.lease
        holder = Holder(workflow_id=lease.workflow_id, job=lease.job, attempt=lease.attempt,
                        worker_id=lease.worker_id, since=0.0)  # fmt: skip
        for key in (lease.group, lease.quota):
            if key is not None:
                with contextlib.suppress(Exception):
                    await self._leases.groups.leave(key, holder)

    def _claimed(self) -> JobState:
        """The job as this lease's claim left it (enough to decide a success on)."""
        lease = self.lease
        return updated(
            pending(lease.workflow_id, lease.job),
            status=JobStatus.RUNNING,
            attempt=lease.attempt,
            epoch=lease.epoch,
            worker_id=lease.worker_id,
            dispatch_seq=lease.dispatch_seq,
            lease_ttl=lease.ttl,
            last_seq=lease.claim_seq,
        )

    async def _confirm_cancelled(self, state: JobState) -> None:
        whole = await self._leases._state(self.lease, whole=True) or state
        command = ConfirmCancelled(**self._ids, now=now())
        accepted = False
        with contextlib.suppress(JetworkError):
            events, after = await record_result(self._leases.store, whole, command)
            accepted = not any(isinstance(e, JobResultRejected) for e in events) and (
                bool(events) or after.settled_epoch == self.lease.epoch
            )
            if events:
                self._observe(command, events)
        await self._leases.keeping.end(self.lease, accepted=accepted)
        await self._leave_group()


def group_holder(dispatch: Dispatch, worker_id: str, seq: int) -> Holder:
    queued = dispatch.queued
    return Holder(workflow_id=queued.workflow_id, job=queued.job, attempt=queued.attempt,
                  worker_id=worker_id, since=time.time(), seq=seq,
                  queued_at=queued.queued_at.timestamp())  # fmt: skip


def utc_ms(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


__all__ = ["Claim", "LabelSet", "LeaseGone", "LeaseHandle", "LeaseUnknown", "Leases", "utc_ms"]
