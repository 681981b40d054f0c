"""The workflow states an engine holds in memory, for the partitions it owns.

The owner of a partition folds every event of its workflows as it happens — its own appends when
they are acknowledged, the workers' events as its partition consumer delivers them — so it
decides without reading the log back. A workflow it has not seen (after a takeover, or evicted
from the bounded cache) is read from the log once, on its first message. A message that is not
an event is skipped, dead-lettered once, and still counted in its actor's sequence (the next CAS
append expects it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Final

import structlog
from nats.aio.client import Client as NATS

from actors import workflow
from actors._state import updated
from actors.appends import Append
from actors.workflow import WorkflowState
from actors.workflow_state import blank
from events import subjects
from events.base import RecordedEvent
from events.codec import decode
from events.dead_letters import report_undecodable_event
from events.errors import UndecodableEvent
from events.store import ActorRef, EventStore, StoredMessage

_log = structlog.get_logger("jetwork.engine")
_GARBAGE_MEMORY = 10_000


class States:
    def __init__(self, nc: NATS, store: EventStore, *, size: int) -> None:
        self._nc = nc
        self._store = store
        self._size = size
        self._states: OrderedDict[str, WorkflowState] = OrderedDict()
        # Bumped each time a partition is given up: a batch that began under an earlier tenure
        # must not keep a state (the next owner may have decided since; a state kept from before
        # would lack what it appended, and deciding "nothing to do" on it loses a trigger).
        self._tenures: dict[int, int] = {}
        self._garbage_seen: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def get(self, wf_id: str) -> WorkflowState | None:
        state = self._states.get(wf_id)
        if state is not None:
            self._states.move_to_end(wf_id)
        return state

    def tenure(self, partition: int) -> int:
        """How many times ``partition`` was given up: a batch notes it when it takes a message."""
        return self._tenures.get(partition, 0)

    def put(self, state: WorkflowState, *, tenure: int | None = None) -> None:
        """Keep ``state``; unless ``tenure`` (the one it was decided under) has ended since."""
        if tenure is not None and tenure != self.tenure(subjects.partition_of(state.workflow_id)):
            return
        self._states[state.workflow_id] = state
        self._states.move_to_end(state.workflow_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    def give_up(self, partition: int) -> None:
        """End this engine's tenure of ``partition``: drop its states, refuse late ones."""
        self._tenures[partition] = self.tenure(partition) + 1
        for wf_id in [wf for wf in self._states if subjects.partition_of(wf) == partition]:
            del self._states[wf_id]

    def drop(self, wf_id: str) -> None:
        self._states.pop(wf_id, None)

    async def load(self, wf_id: str, *, min_seq: int = 0) -> WorkflowState:
        """The workflow's state read from the log: every event of it, in order.

        Everything the log held when the read began, and at least ``min_seq`` (the triggering
        event): a stream follower answering the read may lag, so the read first asks the
        stream's leader for the workflow's newest sequence and waits until a replica holds it.
        Deciding "nothing to do" on a state missing an event would lose a trigger (a join never
        queued, a retry timer finding its job not retrying): found by the chaos run, where a
        restarted node catching up answered reads without events this engine had already
        reacted to (a state dropped after a conflict, read again for a fired timer).
        """
        events = subjects.workflow_events(wf_id)
        min_seq = max(min_seq, await self._store.newest_seq(events))
        messages = await self._store.read_raw(events, min_seq=min_seq)
        state = blank(wf_id)
        recorded: list[RecordedEvent] = []
        garbage: list[StoredMessage] = []
        for message in messages:
            try:
                event = decode(message.data, subject=message.subject, seq=message.seq)
            except UndecodableEvent as exc:
                garbage.append(message)
                await self.report_garbage(message.subject, message.seq, message.data, str(exc))
                continue
            recorded.append(RecordedEvent(message.seq, message.subject, message.time, event))
        if recorded:
            state = workflow.replay(recorded, state)
        for message in garbage:
            state = skip_over(state, message.subject, message.seq)
        return state

    async def refresh_job(self, state: WorkflowState, job: str) -> WorkflowState:
        """``state`` with what the log holds of one job beyond it (its claims, which the engine
        does not follow as they happen)."""
        known = state.job(job).last_seq
        actor = ActorRef.job(state.workflow_id, job)
        recorded = await self._store.load(actor, from_seq=known + 1, current=True)
        return workflow.replay(recorded, state) if recorded else state

    async def report_garbage(self, subject: str, seq: int, data: bytes, reason: str) -> None:
        """Dead-letter a message that is not an event, once per sequence."""
        if seq in self._garbage_seen:
            return
        self._garbage_seen[seq] = None
        while len(self._garbage_seen) > _GARBAGE_MEMORY:
            self._garbage_seen.popitem(last=False)
        _log.warning("not an event, skipped", subject=subject, seq=seq, reason=reason)
        await report_undecodable_event(
            self._nc, subject=subject, seq=seq, payload=data, reason=reason
        )


def absorb(state: WorkflowState, landed: list[tuple[Append, int]]) -> WorkflowState:
    """``state`` (the decided events folded in already) with each appended actor's new sequence.

    ``landed``: each append with the stream sequence of its last event. Each append was
    conditional on its actor's last sequence, so that actor's events up to the new sequence are
    exactly its state's: only the sequences were unknown when the events were decided.
    """
    wf_filter = subjects.workflow_actor_filter(state.workflow_id)
    jobs = None
    last_seq = state.last_seq
    for append, seq in landed:
        if append.actor_filter == wf_filter:
            last_seq = max(last_seq, seq)
            continue
        name = append.events[0].job  # type: ignore[union-attr]
        jobs = dict(state.jobs) if jobs is None else jobs
        current = jobs.get(name) or state.job(name)
        jobs[name] = updated(current, last_seq=max(current.last_seq, seq))
    if jobs is None:
        return updated(state, last_seq=last_seq)
    return updated(state, last_seq=last_seq, jobs=jobs)


BATCH_POSITION: Final = "Nats-Batch-Sequence"
"""Header of a message of an atomic append: its place in the batch (1 is the first)."""


def lacks_earlier_part(
    state: WorkflowState, job: str | None, seq: int, headers: Mapping[str, str] | None
) -> bool:
    """Whether ``state`` lacks the message just before this one in its atomic append (a failed
    attempt and its retry are appended together, contiguous in the log).

    The engines of a partition pull from one durable consumer: a message delivered to an
    engine that no longer owns the partition is left unacknowledged and comes back after its
    ack wait, *behind* newer ones. The owner may then get a retry's ``JobRetryScheduled``
    without the ``JobFailed`` before it; folded onto its state, the failure would later be
    skipped as folded already, and the retry queued with the epoch before the failed claim
    (``[epochs increase]``, found by the short chaos run). Such a state is read from the log
    instead. (A claim the engine does not follow, ``JobStarted``, is not a part of a batch:
    its absence is by design and asks for no read.)
    """
    position = headers.get(BATCH_POSITION) if headers else None
    if position is None or not position.isdigit() or int(position) < 2:
        return False
    known = state.job(job).last_seq if job is not None else state.last_seq
    return known < seq - 1


def skip_over(state: WorkflowState, subject: str, seq: int) -> WorkflowState:
    """Account for a message that is not an event: its actor's next CAS must expect it."""
    parsed = subjects.parse_event_subject(subject)
    stream_seq = max(state.stream_seq, seq)
    if parsed is not None and parsed.job is not None:
        job_state = state.job(parsed.job)
        jobs = {**state.jobs, parsed.job: updated(job_state, last_seq=max(job_state.last_seq, seq))}
        return updated(state, jobs=jobs, stream_seq=stream_seq)
    if parsed is not None:
        return updated(state, last_seq=max(state.last_seq, seq), stream_seq=stream_seq)
    return updated(state, stream_seq=stream_seq)
