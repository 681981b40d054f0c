"""Step 1 of an engine batch (``batch.py``): its messages taken apart, each an item of its
workflow's ``Work``: a start (its definition validated once per distinct content), a cancel, an
operator's control (pause, resume, skip, retry), a fired timer, or a job event (decoded once; an
undecodable one is dead-lettered and skipped).
Malformed input is refused: dead-lettered, then acked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from actors.appends import Append
from actors.engine.definition_cache import DefinitionCache
from actors.engine.groups import Groups
from actors.engine.labelsets import LabelSets
from actors.engine.quotas import Quotas
from actors.engine.reactions import (
    Admit,
    Cancel,
    ChildEnded,
    Control,
    Fired,
    Item,
    Reaction,
    Start,
)
from actors.engine.states import States, lacks_earlier_part, skip_over
from actors.engine.timers import TIMERS, AnyTimer, Timers
from actors.workflow import WorkflowState
from events import subjects
from events.base import RecordedEvent
from events.codec import decode
from events.dead_letters import record_dead_letter
from events.errors import InvalidWorkflow, UndecodableEvent
from events.pipeline import Pipeline
from events.requests import (
    REQUESTS,
    AdmitRequest,
    CancelRequest,
    ChildEndedRequest,
    ControlAnswer,
    ControlRequest,
    StartAnswer,
    StartRequest,
)

_log = structlog.get_logger("jetwork.engine")


@dataclass
class Work:
    """What one batch brought for one workflow, and how far it got."""

    wf_id: str
    partition: int
    tenure: int  # this engine's tenure of the partition when the batch took the message
    items: list[Item] = field(default_factory=list)
    messages: list[tuple[Msg, Item]] = field(default_factory=list)  # to settle when done
    fresh: bool = False  # only starts so far, for a workflow not in memory: presumed new
    state: WorkflowState | None = None
    reaction: Reaction | None = None
    stages: list[list[Append]] = field(default_factory=list)
    decision: str = ""
    landed: list[tuple[Append, int]] = field(default_factory=list)
    landed_seq: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    conflicts: int = 0
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What every batch of one engine shares."""

    nc: NATS
    states: States
    definitions: DefinitionCache
    labelsets: LabelSets
    pipeline: Pipeline
    timers: Timers
    groups: Groups
    holds: Callable[[int], bool]
    clock: Callable[[], datetime]
    stopping: Callable[[], bool]
    decision_id: Callable[[], str]
    """A new id for one workflow's decision, unique across engines (prefixes its msg ids)."""
    quotas: Quotas | None = None
    """Namespaces' workflow quotas (``quotas.py``); None: not enforced (tests' bare contexts)."""


class Intake:
    """A batch's messages taken apart into each workflow's ``Work`` (step 1), and the answers
    and refusals every step sends (``Batch`` goes on from here)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._works: dict[str, Work] = {}
        self._done: list[Msg] = []  # acked once the batch is over (nothing depends on them)

    # --- 1. take apart -------------------------------------------------------------------------

    async def take(self, messages: list[Msg], fired: list[AnyTimer]) -> None:
        for timer in fired:
            self._work(timer.workflow_id).items.append(Fired(timer))
        for msg in messages:
            if msg.subject.startswith("evt."):
                await self._take_event(msg)
            else:
                await self._take_command(msg)

    def _work(self, wf_id: str) -> Work:
        work = self._works.get(wf_id)
        if work is None:
            partition = subjects.partition_of(wf_id)
            tenure = self._ctx.states.tenure(partition)
            work = self._works[wf_id] = Work(wf_id, partition, tenure)
        return work

    def _add(self, wf_id: str, item: Item, msg: Msg | None) -> None:
        work = self._work(wf_id)
        if not work.items:
            work.fresh = isinstance(item, Start) and self._ctx.states.get(wf_id) is None
        elif not isinstance(item, Start):
            work.fresh = False
        work.items.append(item)
        if msg is not None:
            work.messages.append((msg, item))

    async def _take_event(self, msg: Msg) -> None:
        parsed = subjects.parse_event_subject(msg.subject)
        seq = msg.metadata.sequence.stream
        if parsed is None:
            self._done.append(msg)
            return
        # Decoded and reacted to even when the state in memory folded it already (our own
        # append coming back, a redelivery, or an event a read of the log took in before its
        # delivery): what it asks for is judged on the current state, so a moment passed causes
        # nothing, and one not reacted to yet (a retry's timer) is never skipped.
        cached = self._ctx.states.get(parsed.workflow_id)
        if cached is not None and lacks_earlier_part(cached, parsed.job, seq, msg.headers):
            self._ctx.states.drop(parsed.workflow_id)  # read from the log with this message
            cached = None
        try:
            event = decode(msg.data, subject=msg.subject, seq=seq)
        except UndecodableEvent as exc:
            await self._ctx.states.report_garbage(msg.subject, seq, msg.data, str(exc))
            if cached is not None:
                self._ctx.states.put(skip_over(cached, msg.subject, seq))
            self._done.append(msg)
            return
        recorded = RecordedEvent(seq, msg.subject, msg.metadata.timestamp, event)
        self._add(parsed.workflow_id, recorded, msg)

    async def _take_command(self, msg: Msg) -> None:
        if ".timer." in msg.subject:
            try:
                timer = TIMERS.validate_json(msg.data)
            except ValidationError as exc:
                await self._refuse(msg, f"malformed timer: {_summary(exc)}")
                return
            self._add(timer.workflow_id, Fired(timer, from_stream=True), msg)
            return
        try:
            request = REQUESTS.validate_json(msg.data)
        except ValidationError as exc:
            await self._refuse(msg, f"malformed command: {_summary(exc)}")
            return
        if isinstance(request, CancelRequest):
            self._add(request.workflow_id, Cancel(request), msg)
            return
        if isinstance(request, ChildEndedRequest):
            self._add(request.workflow_id, ChildEnded(request), msg)
            return
        if isinstance(request, AdmitRequest):
            self._add(request.workflow_id, Admit(request), msg)
            return
        if not isinstance(request, StartRequest):
            self._add(request.workflow_id, Control(request), msg)
            return
        try:
            definition = self._ctx.definitions.parse(request.definition, source=request.workflow_id)
        except InvalidWorkflow as exc:
            await self._answer(request, accepted=False, error=str(exc))
            await self._refuse(msg, str(exc))
            return
        self._add(request.workflow_id, Start(request, definition), msg)

    # --- answers and refusals ------------------------------------------------------------------

    async def _answer(
        self, request: StartRequest, *, accepted: bool, created: bool = False, error: str = ""
    ) -> None:
        if request.reply_to is None:
            return
        answer = StartAnswer(
            workflow_id=request.workflow_id, accepted=accepted, created=created, error=error or None
        )
        try:
            await self._ctx.nc.publish(request.reply_to, answer.model_dump_json().encode())
        except Exception as exc:  # the answer is a courtesy: the log holds the outcome
            _log.warning("could not answer a start", workflow=request.workflow_id, error=repr(exc))

    async def _answer_control(
        self, request: ControlRequest, *, changed: bool = False, error: str | None = None
    ) -> None:
        if request.reply_to is None:
            return
        answer = ControlAnswer(
            workflow_id=request.workflow_id,
            command=request.type,
            accepted=error is None,
            changed=changed,
            error=error,
            restarted_as=getattr(request, "restarted_as", None) if error is None else None,
        )
        # ``restarted_as`` only in a restart's answer: the others keep their documented shape.
        payload = answer.model_dump_json(
            exclude={"restarted_as"} if not answer.restarted_as else None
        )
        try:
            await self._ctx.nc.publish(request.reply_to, payload.encode())
        except Exception as exc:  # a courtesy, as a start's answer: the log holds the outcome
            _log.warning("could not answer", workflow=request.workflow_id, error=repr(exc))

    async def _refuse(self, msg: Msg, reason: str) -> None:
        """Input that can never be processed: dead-letter it, then ack it."""
        await record_dead_letter(
            self._ctx.nc,
            source="commands" if msg.subject.startswith("cmd.") else "events",
            subject=msg.subject,
            payload=msg.data,
            reason=reason,
            seq=msg.metadata.sequence.stream,
        )
        await msg.ack()


def _summary(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return "; ".join(parts)
