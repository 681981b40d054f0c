"""One batch of the engine's loop: messages taken apart, decided per workflow, appended together.

1. **Take apart.** Every message becomes an item of its workflow's ``Work``: a start (its
   definition validated once per distinct content), a cancel, an operator's
   control (pause, resume, skip, retry), a fired timer, or a job event.
2. **Decide.** Each workflow's items are folded and decided in one ``react`` on its state in
   memory (read from the log only when it is not there).
3. **Append.** The decided events of all workflows go out together, stage by stage
   (``reactions.stages``): one round trip per stage for the whole batch. Each stage goes out only
   while the partition's lease holds (an owner frozen while it awaited the stage before sends
   nothing more when it wakes past its lease: the next owner gets the messages again).
4. **Carry out.** Each workflow whose appends landed gets its new state, its timers and notices,
   its start answers, and then its messages are acknowledged. One whose append conflicted (a
   worker wrote to a job meanwhile) is read from the log and decided again; one that fails for
   another reason is retried with backoff (a store outage), or dead-lettered when it can never
   succeed. Nothing is acknowledged before what it caused is in the log.

Step 1 (and the answers and refusals every step sends) is ``Intake``, in ``intake.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable
from typing import Final

import structlog
from nats.aio.msg import Msg
from nats.errors import ConnectionReconnectingError, NoRespondersError, OutboundBufferLimitError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NoStreamResponseError, NotFoundError, ServiceUnavailableError

from actors.engine.intake import Context, Intake, Work
from actors.engine.quotas import RECHECK as QUOTA_RECHECK
from actors.engine.quotas import Held
from actors.engine.reactions import Control, Fired, Item, Reaction, Start, react
from actors.engine.states import absorb
from actors.engine.timers import DispatchTimeoutTimer, JobTimeoutTimer, LeaseTimer
from actors.subworkflows import outbox_msg_id
from actors.workflow import WorkflowState
from actors.workflow_state import blank
from events import namespaces, subjects
from events.base import Event, RecordedEvent
from events.catalog import (
    JobQueued,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowStarted,
    WorkflowSucceeded,
)
from events.errors import ConcurrencyConflict, JetworkError, WorkflowNotFound
from events.pipeline import Fenced, Pending
from events.requests import request_msg_id
from events.store import ActorRef
from telemetry import metrics, tracing

__all__ = ["Batch", "Context", "Work"]

_ENDS: Final = (WorkflowSucceeded, WorkflowFailed, WorkflowCancelled)

_log = structlog.get_logger("jetwork.engine")
# A workflow whose processing keeps failing for a reason that does not pass: dead-lettered.
_MAX_FAILURES = 5
# Deliveries of a cancel for a workflow the log does not show before it is dead-lettered (a
# lagging replica may not show a workflow started a moment ago).
_NOT_FOUND_TRIES = 3
# Conflicts decided again at once; beyond, with a growing random pause.
_QUIET_CONFLICTS = 5
_TRANSIENT = (
    TimeoutError,
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    OutboundBufferLimitError,
    ConnectionError,
)


class _Fenced(Fenced):
    """The engine's lease on the partition lapsed part-way through a decision (the process was
    frozen, or its renewals failed): the stages not sent yet are never sent, nothing of the
    workflow's batch is acknowledged, and the partition's next owner gets its messages again."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"no longer the owner of partition {partition}")


class Batch(Intake):
    """One batch: taken apart (``Intake.take``), then decided, appended and carried out
    (``settle``)."""

    # --- 2-4. decide, append, carry out --------------------------------------------------------

    async def settle(self) -> None:
        """Decide and append until every workflow of the batch is done (or handed back)."""
        works = self._still_owned(list(self._works.values()))
        while works and not self._ctx.stopping():
            await self._load([work for work in works if work.state is None])
            works = await self._within_quotas(works)
            for work in works:
                self._decide(work)
            await self._ctx.labelsets.register(
                event.route
                for work in works
                if work.reaction is not None
                for event in work.reaction.decided
                if isinstance(event, JobQueued)
            )
            # Fenced: nothing acked for a lost partition (``_append`` checks every stage too).
            works = self._still_owned(works)
            await self._append(works)
            retry = []
            for work in works:
                if work.error is None:
                    try:
                        await self._carry_out(work)
                        continue
                    except Exception as exc:  # e.g. a timer not stored: decided again, re-armed
                        work.error = exc
                if await self._failed(work):
                    retry.append(work)
            works = retry
        for msg in self._done:
            await msg.ack()

    def forget(self) -> None:
        """Drop the states of every workflow of this batch (it failed: its messages are not
        acknowledged, see ``_still_owned``)."""
        for wf_id in self._works:
            self._ctx.states.drop(wf_id)

    def _still_owned(self, works: list[Work]) -> list[Work]:
        """The works of partitions this engine still holds. The others' messages are left
        unacknowledged, for the partition's next owner or for this engine once its lease holds
        again; they come back after their ack wait, *behind* newer messages. So the state in
        memory, which lacks them, is dropped: folding a newer event onto it would mark the left
        ones as folded already (their sequences are lower), and they would be skipped. Found by
        the chaos run: a retry queued on a state that never saw the failed attempt's claim took
        that attempt's epoch again (``test_engine_fencing.py``)."""
        owned = []
        for work in works:
            if self._owned(work):
                owned.append(work)
            else:
                self._ctx.states.drop(work.wf_id)
        return owned

    def _owned(self, work: Work) -> bool:
        """The partition's lease holds, and has held without a break since the batch took
        the work's messages (a partition lost and taken again meanwhile: another engine may
        have decided for it, so nothing decided on what this batch read may count)."""
        partition = work.partition
        return self._ctx.holds(partition) and self._ctx.states.tenure(partition) == work.tenure

    async def _load(self, works: list[Work]) -> None:
        async def load(work: Work) -> None:
            if work.fresh:
                work.state = blank(work.wf_id)
                return
            states = self._ctx.states
            try:
                state = states.get(work.wf_id) or await states.load(
                    work.wf_id, min_seq=_newest_seq(work.items)
                )
                for name in _timed_out_jobs(work.items):
                    state = await states.refresh_job(state, name)
                work.state = state
            except Exception as exc:
                work.error = exc

        await _gather([load(work) for work in works])

    async def _within_quotas(self, works: list[Work]) -> list[Work]:
        """Take a quota place for each new workflow a start creates in a namespace with a
        workflow quota (``quotas.py``); a start over quota is held back or refused here, before
        anything is decided, and leaves its work (a work left with nothing is done)."""
        quotas = self._ctx.quotas
        if quotas is None:
            return works
        kept = []
        for work in works:
            state = work.state
            start = next((item for item in work.items if isinstance(item, Start)), None)
            if start is None or state is None or state.status is not None:
                kept.append(work)
                continue
            namespace = namespaces.shown(start.request.namespace)
            try:
                held = await quotas.enter(namespace, work.wf_id)
            except Exception as exc:  # a store outage: retried like any failed decision
                work.error = exc
                kept.append(work)
                continue
            if held is None:
                kept.append(work)
                continue
            reason = held.reason
            if held.wait and await self._command_waits(subjects.command("cancel", work.wf_id)):
                # Cancelled while it waited: it never starts (the cancel finds no workflow).
                held = Held(wait=False, reason=f"cancelled while its start waited: {reason}")
            for msg, item in [(m, i) for m, i in work.messages if isinstance(i, Start)]:
                assert isinstance(item, Start)
                if held.wait:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=QUOTA_RECHECK)
                else:
                    await self._answer(item.request, accepted=False, error=held.reason)
                    await self._refuse(msg, held.reason)
            work.items = [item for item in work.items if not isinstance(item, Start)]
            work.messages = [(m, i) for m, i in work.messages if not isinstance(i, Start)]
            if work.items:
                kept.append(work)
        return kept

    def _decide(self, work: Work) -> None:
        if work.state is None:
            return  # its load failed: work.error says why
        try:
            work.reaction = react(work.state, work.items, self._ctx.clock())
        except Exception as exc:  # a bug in deciding: retried, then dead-lettered
            work.error = exc
            return
        work.decision = self._ctx.decision_id()
        work.stages = work.reaction.stages(work.state)

    async def _append(self, works: list[Work]) -> None:
        """Send stage k of every workflow together; a workflow stops at its first error.

        An actor appended to in an earlier stage of the same decision expects the sequence that
        append landed at."""
        depth = max((len(work.stages) for work in works), default=0)
        for stage_no in range(depth):
            sending: list[tuple[Work, list[Pending]]] = []
            for work in works:
                if work.error is not None or stage_no >= len(work.stages):
                    continue
                if not self._owned(work):  # the lease lapsed during a stage
                    work.error = _Fenced(work.partition)
                    continue
                sending.append((work, self._pending(work, stage_no)))
            if not sending:
                continue
            await self._ctx.pipeline.send([p for _, pending in sending for p in pending])
            for work, pending in sending:
                for append, sent in zip(work.stages[stage_no], pending, strict=True):
                    error = sent.future.exception()
                    if error is None:
                        seq = sent.future.result()
                        work.landed.append((append, seq))
                        work.landed_seq[append.actor_filter] = seq
                    elif work.error is None:
                        work.error = error  # type: ignore[assignment]

    def _pending(self, work: Work, stage_no: int) -> list[Pending]:
        return [
            Pending(
                ActorRef(append.actor_filter),
                append.events,
                work.landed_seq.get(append.actor_filter, append.expected_last_seq),
                f"{work.decision}.{stage_no}.{index}",
                guard=functools.partial(self._owned, work),
            )
            for index, append in enumerate(work.stages[stage_no])
        ]

    async def _carry_out(self, work: Work) -> None:
        """Arm the timers, keep the new state, push notices, answer starts, ack the messages."""
        assert work.reaction is not None
        reaction = work.reaction
        now = self._ctx.clock()
        for timer in reaction.timers:
            await self._ctx.timers.arm(timer, now=now)
        for new_run in reaction.starts:  # a restart's new run, as any client starts one
            headers = {"Nats-Msg-Id": request_msg_id(new_run)}
            data = new_run.model_dump_json().encode()
            await self._ctx.nc.jetstream().publish(new_run.subject(), data, headers=headers)
        for command in reaction.outbox:  # sub-workflows' starts, cancels and ends, sent again
            headers = {"Nats-Msg-Id": outbox_msg_id(command)}
            data = command.model_dump_json().encode()
            await self._ctx.nc.jetstream().publish(command.subject(), data, headers=headers)
        for call in reaction.group_calls:  # (after its timers: a lost call, the next look does)
            await self._ctx.groups.run(call)
        # Only now: a state in memory says its events were reacted to (a redelivery of one is
        # skipped), so it must not be kept before what they ask for (a timer) is stored.
        self._ctx.states.put(absorb(reaction.state, work.landed), tenure=work.tenure)
        _observe(reaction.decided, reaction.state)
        for name in reaction.cancel_notices:
            await self._ctx.nc.publish(subjects.cancel_notice(work.wf_id, name), b"")
        for index, created in reaction.created.items():
            start = work.items[index]
            assert isinstance(start, Start)
            await self._answer(start.request, accepted=True, created=created)
        for index, changed in reaction.applied.items():
            control = work.items[index]
            assert isinstance(control, Control)
            await self._answer_control(control.request, changed=changed)
        unknown = {id(work.items[index]) for index in reaction.unknown}
        refused = {id(work.items[index]): why for index, why in reaction.refused.items()}
        await self._leave_quota(reaction)
        for msg, item in work.messages:
            if id(item) in unknown:
                await self._unknown_workflow(msg, item, work.wf_id)
            elif isinstance(item, Control) and id(item) in refused:
                # An operator's mistake, not garbage: answered, and dead-lettered so that a
                # sender without ``reply_to`` can still find out why nothing happened.
                await self._answer_control(item.request, error=refused[id(item)])
                await self._refuse(msg, refused[id(item)])
            elif isinstance(item, Start) and id(item) in refused:  # its id is another namespace's
                await self._answer(item.request, accepted=False, error=refused[id(item)])
                await self._refuse(msg, refused[id(item)])
            else:
                await msg.ack()

    async def _leave_quota(self, reaction: Reaction) -> None:
        """The workflow's quota place is given back once its end is stored."""
        if self._ctx.quotas is None or not any(isinstance(e, _ENDS) for e in reaction.decided):
            return
        try:
            await self._ctx.quotas.leave(
                namespaces.shown(reaction.state.namespace), reaction.state.workflow_id
            )
        except Exception as exc:  # found and dropped by the next start the quota holds back
            _log.warning("quota place not given back", workflow=reaction.state.workflow_id,
                         error=repr(exc))  # fmt: skip

    async def _failed(self, work: Work) -> bool:
        """Handle a workflow whose batch failed; True to try it again now."""
        error, work.error = work.error, None
        work.state, work.reaction, work.stages, work.fresh = None, None, [], False
        work.landed, work.landed_seq = [], {}
        self._ctx.states.drop(work.wf_id)  # read it from the log again
        if isinstance(error, Fenced):
            _log.info("partition lost mid-decision, left to its next owner", workflow=work.wf_id)
            return False
        if isinstance(error, ConcurrencyConflict):
            work.conflicts += 1
            metrics.ENGINE_CONFLICTS.inc()
            _log.debug("conflict, deciding again", workflow=work.wf_id, error=str(error))
            if work.conflicts > _QUIET_CONFLICTS:  # a writer that keeps winning: let it finish
                _log.warning("workflow keeps conflicting", workflow=work.wf_id, error=str(error))
                await asyncio.sleep(random.uniform(0, min(1.0, 0.01 * work.conflicts)))
            return True
        work.failures += 1
        assert error is not None
        if work.failures >= _MAX_FAILURES and not _transient(error):
            _log.error("giving up on a workflow's messages", workflow=work.wf_id, error=repr(error))
            for msg, _ in work.messages:
                await self._refuse(msg, str(error) or repr(error))
            return False
        _log.warning("will retry", workflow=work.wf_id, error=str(error) or repr(error))
        await asyncio.sleep(min(2.0, 0.05 * 2**work.failures))
        return True

    async def _command_waits(self, subject: str) -> bool:
        """Whether a command waits on ``subject`` in the commands stream (one direct get)."""
        try:
            await self._ctx.nc.jetstream().get_last_msg(subjects.COMMANDS_STREAM, subject)
        except NotFoundError:
            return False
        return True

    async def _unknown_workflow(self, msg: Msg, item: Item, workflow_id: str) -> None:
        if await self._command_waits(subjects.command("start", workflow_id)):
            # Its start waits (for its namespace's quota, or for an engine to take its partition
            # up after a kill): a cancel, a signal or any control is kept until the start is
            # decided, never dead-lettered meanwhile (a signal sent right after its start was
            # lost so in a chaos run: the wait then timed out).
            await msg.nak(delay=QUOTA_RECHECK)
            return
        if msg.metadata.num_delivered >= _NOT_FOUND_TRIES:
            error = str(WorkflowNotFound(workflow_id))
            if isinstance(item, Control):
                await self._answer_control(item.request, error=error)
            await self._refuse(msg, error)
        else:
            await msg.nak(delay=0.5 * msg.metadata.num_delivered)


_ENDED: Final = {
    WorkflowSucceeded: "succeeded",
    WorkflowFailed: "failed",
    WorkflowCancelled: "cancelled",
}


def _observe(decided: list[Event], state: WorkflowState) -> None:
    """Count what one decision appended; a run that ended gets its span (when tracing)."""
    workflow = state.definition.name if state.definition else "?"
    for event in decided:
        if isinstance(event, JobQueued):
            metrics.child(metrics.JOBS_QUEUED, event.labelset_token).inc()
        elif isinstance(event, WorkflowStarted):
            metrics.child(metrics.WORKFLOWS_STARTED, workflow).inc()
        elif (status := _ENDED.get(type(event))) is not None:
            metrics.child(metrics.WORKFLOWS_ENDED, workflow, status).inc()
            if tracing.enabled() and state.started_at is not None:
                began = state.retried_at or state.started_at
                tracing.record_workflow(
                    state.workflow_id, name=workflow, status=status, started=began,
                    ended=getattr(event, "ended_at", None) or began, retry=state.retries,
                    traceparent=state.traceparent,
                )  # fmt: skip


def _newest_seq(items: list[Item]) -> int:
    return max((item.seq for item in items if isinstance(item, RecordedEvent)), default=0)


def _timed_out_jobs(items: list[Item]) -> set[str]:
    """Jobs whose timeout, lease or dispatch timer fired: deciding it needs their claims, which
    the engine does not follow as they happen, read from the log."""
    return {
        item.timer.job
        for item in items
        if isinstance(item, Fired)
        and isinstance(item.timer, JobTimeoutTimer | LeaseTimer | DispatchTimeoutTimer)
    }


async def _gather(calls: list[Awaitable[None]]) -> None:
    if len(calls) == 1:
        await calls[0]
    elif calls:
        await asyncio.gather(*calls)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, JetworkError):
        return exc.retryable
    return isinstance(exc, _TRANSIENT)
