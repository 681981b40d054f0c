"""Claiming a dispatched job and recording its result under CAS, against the job actor's log.

Shared by the worker (``sdk.worker.attempt``) and the HTTP gateway (``gateway.leases``): both
decide ``ClaimJob`` / ``CompleteJob`` / ``FailJob`` / ``ConfirmCancelled`` with the job actor and
append the events under the actor's last sequence, reloading and deciding again on a conflict.
A dispatch is the ``JobQueued`` event itself, delivered by its label set's consumer
(``events.dispatch``). What to do with the message afterwards is the caller's business;
``ClaimOutcome.action`` says what the log allows.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Final

from nats.aio.msg import Msg

from actors._state import updated
from actors.commands import ClaimJob, CompleteJob, ConfirmCancelled, FailJob, ParkJob
from actors.job import ClaimRefused, JobState, carry_claim, decide, evolve, pending, replay
from events.catalog import JobCancelled, JobEvent, JobQueued, JobStarted, JobStatus
from events.codec import decode
from events.dispatch import InvalidDispatch
from events.errors import ConcurrencyConflict, JetworkError, StoreError, UndecodableEvent
from events.store import ActorRef, EventStore
from sdk.worker.results import held_by_another

CLAIM_TRIES: Final = 5
REPORT_TRIES: Final = 10
NOT_QUEUED_DELIVERIES: Final = 20
"""A dispatch whose attempt the log never shows as queued goes to dead letters after this many."""


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A delivered ``JobQueued``: which attempt of which job may be claimed."""

    queued: JobQueued

    @property
    def workflow_id(self) -> str:
        return self.queued.workflow_id

    @property
    def job(self) -> str:
        return self.queued.job

    @property
    def attempt(self) -> int:
        return self.queued.attempt

    @property
    def msg_id(self) -> str:
        return f"{self.workflow_id}.{self.job}.{self.attempt}"

    @classmethod
    def decode(cls, msg: Msg) -> Dispatch:
        """The dispatch a message carries; ``InvalidDispatch`` says what is wrong with it."""
        try:
            event = decode(msg.data, subject=msg.subject, seq=msg.metadata.sequence.stream)
        except UndecodableEvent as exc:
            raise InvalidDispatch(str(exc)) from None
        if not isinstance(event, JobQueued) or event.subject() != msg.subject:
            raise InvalidDispatch(f"{msg.subject} does not hold the JobQueued its subject names")
        return cls(event)


class Action(Enum):
    """What becomes of a dispatch message that was not claimed."""

    ACK = "ack"
    """Drop it for good: the job moved on (or was cancelled on this redelivery)."""
    KEEP = "keep"
    """Leave it alone: another claim of this very message runs, its holder will ack it."""
    RELEASE = "release"
    """Give it back for a later delivery (the log is behind, or the store failed)."""
    DEAD_LETTER = "dead_letter"
    """The log never showed the attempt as queued: an anomaly for operators."""


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    """A claim's result: ``claimed`` with the job's state after the claim (its epoch is the
    lease), or not, with ``action`` for the message and the ``reason``."""

    claimed: bool
    state: JobState | None
    action: Action | None = None
    reason: str = ""
    cancelled: bool = False
    """Not claimed because this claim cancelled the job (a cancel request was waiting)."""
    took_over: bool = False
    """Claimed from a holder whose lease had run out (the attempt was running)."""


async def claim_dispatch(
    store: EventStore,
    dispatch: Dispatch,
    *,
    worker_id: str,
    delivery: int,
    dispatch_seq: int,
    lease_ttl: float,
) -> ClaimOutcome:
    """Decide and append ``ClaimJob`` for one delivery of ``dispatch`` (5 tries on conflicts);
    ``dispatch_seq`` is the stream sequence of its ``JobQueued``."""
    actor = ActorRef.job(dispatch.workflow_id, dispatch.job)
    quick = True
    for attempt in range(1, CLAIM_TRIES + 1):
        state = None
        try:
            state = await load_job(store, dispatch, dispatch_seq=dispatch_seq, quick=quick)
            quick = False  # a conflict or a refusal: look at the whole history next time
            command = _claim_command(dispatch, worker_id, delivery, dispatch_seq, lease_ttl)
            if state is None:
                raise ClaimRefused("the job has no events yet", retryable=True)
            events = decide(state, command)
            seq = await store.append(
                actor,
                events,
                expected_seq=state.last_seq,
                command_id=claim_id(dispatch, dispatch_seq=dispatch_seq, delivery=delivery),
            )
        except ClaimRefused as refused:
            if refused.retryable and attempt < CLAIM_TRIES:
                await asyncio.sleep(0.05 * attempt)
                continue
            return _refusal(state, refused, delivery=delivery, dispatch_seq=dispatch_seq)
        except ConcurrencyConflict:
            continue
        except JetworkError as exc:  # the store failed, or the log holds an undecodable event
            return ClaimOutcome(False, state, Action.RELEASE, f"cannot claim: {exc}")
        was_running = state.status is JobStatus.RUNNING
        state = updated(replay(events, state), last_seq=seq)
        if isinstance(events[-1], JobCancelled):
            return ClaimOutcome(
                False, state, Action.ACK, "cancelled before it ran again", cancelled=True
            )
        return ClaimOutcome(True, state, took_over=was_running)
    return ClaimOutcome(False, None, Action.RELEASE, f"the claim conflicted {CLAIM_TRIES} times")


def _from_dispatch(dispatch: Dispatch, dispatch_seq: int) -> JobState:
    """The job's state from its delivered ``JobQueued`` alone (see ``load_job``)."""
    queued = dispatch.queued
    state = evolve(pending(queued.workflow_id, queued.job), queued)
    return updated(state, epoch=queued.prior_epoch, last_seq=dispatch_seq)


def _claim_command(
    dispatch: Dispatch, worker_id: str, delivery: int, dispatch_seq: int, lease_ttl: float
) -> ClaimJob:
    return ClaimJob(
        workflow_id=dispatch.workflow_id,
        job=dispatch.job,
        attempt=dispatch.attempt,
        worker_id=worker_id,
        delivery=delivery,
        dispatch_seq=dispatch_seq,
        lease_ttl=lease_ttl,
        now=now(),
    )


def claim_id(dispatch: Dispatch, *, dispatch_seq: int, delivery: int) -> str:
    """The command id of one delivery's claim: the same whether it is appended alone or later."""
    return f"{dispatch.msg_id}.d{dispatch_seq}.{delivery}.claim"


def claim_locally(
    dispatch: Dispatch, *, worker_id: str, delivery: int, dispatch_seq: int, lease_ttl: float
) -> tuple[JobStarted, JobState] | None:
    """The claim of a first delivery decided from the dispatch alone, not appended: its
    ``JobStarted`` and the job's state after it, whose ``last_seq`` is still the dispatch's
    (what the claim, appended later or inside the result, expects). None when the dispatch
    alone does not make a plain claim (a sleep, a refusal): claim the usual way then."""
    state = _from_dispatch(dispatch, dispatch_seq)
    command = _claim_command(dispatch, worker_id, delivery, dispatch_seq, lease_ttl)
    try:
        events = decide(state, command)
    except ClaimRefused:
        return None
    started = events[0] if len(events) == 1 else None
    if not isinstance(started, JobStarted):
        return None
    return started, updated(evolve(state, started), last_seq=dispatch_seq)


async def append_claimed_result(
    store: EventStore,
    dispatch: Dispatch,
    started: JobStarted,
    state: JobState,
    command: ResultCommand,
) -> tuple[list[JobEvent], JobState] | None:
    """Append the result ``command`` with its claim ``started`` inside (``carry_claim``) under
    the dispatch's sequence; ``state`` is the one ``claim_locally`` made. None when the result
    cannot carry the claim (append the claim first then). Raises ``ConcurrencyConflict`` when
    the log moved since the dispatch: the claim, and so the run, did not count."""
    events = carry_claim(started, decide(state, command))
    if events is None:
        return None
    claimed = claim_id(dispatch, dispatch_seq=started.dispatch_seq, delivery=started.delivery)
    seq = await store.append(
        ActorRef.job(dispatch.workflow_id, dispatch.job),
        events,
        expected_seq=started.dispatch_seq,
        command_id=f"{claimed}.ran",
    )
    return events, updated(replay(events, state), last_seq=seq)


def _refusal(
    state: JobState | None, refused: ClaimRefused, *, delivery: int, dispatch_seq: int
) -> ClaimOutcome:
    if refused.retryable or state is None:
        # The log does not show this attempt as queued yet (a stale read): look again later,
        # but not forever: the engine queues before it dispatches, so this is an anomaly.
        if delivery >= NOT_QUEUED_DELIVERIES:
            reason = f"{refused.reason} after {delivery} deliveries"
            return ClaimOutcome(False, state, Action.DEAD_LETTER, reason)
        return ClaimOutcome(False, state, Action.RELEASE, refused.reason)
    if held_by_another(state, dispatch_seq):
        return ClaimOutcome(False, state, Action.KEEP, refused.reason)
    return ClaimOutcome(False, state, Action.ACK, refused.reason)


async def load_job(
    store: EventStore, dispatch: Dispatch, *, dispatch_seq: int, quick: bool = False
) -> JobState | None:
    """The job actor's state; ``quick``: from the delivered ``JobQueued`` alone.

    The engine queues an attempt as the actor's newest event and records in it the last epoch
    granted before (``prior_epoch``), so the event at its stream sequence is all a claim needs:
    no read at all. The claim's CAS (expecting that sequence) proves nothing was appended since
    (a redelivery finds the earlier claim that way); a conflict reads the whole history.
    """
    if quick:
        return _from_dispatch(dispatch, dispatch_seq)
    events = await store.load(ActorRef.job(dispatch.workflow_id, dispatch.job))
    return replay(events) if events else None


async def refresh(store: EventStore, state: JobState) -> JobState:
    """``state`` with the job actor's newer events folded in, if any."""
    actor = ActorRef.job(state.workflow_id, state.job)
    known = state.last_seq
    if await store.last_seq(actor) == known:
        return state
    newer = await store.load(actor, from_seq=known + 1)
    return replay(newer, state) if newer else state


ResultCommand = CompleteJob | FailJob | ConfirmCancelled | ParkJob


async def record_result(
    store: EventStore, state: JobState, command: ResultCommand
) -> tuple[list[JobEvent], JobState]:
    """Decide ``command`` (a result of lease ``command.epoch``) and append it under CAS.

    A conflict folds in the newer events and decides again, so the decision is always made on
    the current log: a stale epoch becomes ``JobResultRejected`` (recorded), a result the log
    holds already (an earlier ack was lost) adds nothing (``[]``). Returns the events appended
    and the state after them. Raises ``StoreError`` when it kept conflicting or the store failed.
    """
    actor = ActorRef.job(state.workflow_id, state.job)
    # The attempt too, though the epoch alone is unique per claim: were an epoch ever granted
    # twice, a second result would otherwise be taken for a duplicate and silently dropped.
    command_id = f"{state.workflow_id}.{state.job}.a{state.attempt}.e{command.epoch}.result"
    for _ in range(REPORT_TRIES):
        events = decide(state, command)
        if not events:
            return [], state
        try:
            seq = await store.append(
                actor, events, expected_seq=state.last_seq, command_id=command_id
            )
        except ConcurrencyConflict:
            state = await refresh(store, state)
            continue
        return events, updated(replay(events, state), last_seq=seq)
    raise StoreError(f"the result of {actor.filter} kept conflicting", retryable=True)
