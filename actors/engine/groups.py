"""Workflow concurrency groups, the engine's I/O: the group's queue in KV, grants and cancels sent.

A group's queue (``actors.group_queue``) is one KV entry, ``jw_concurrency`` key ``wf.<group>``,
changed by compare-and-set on its revision: engines racing for one group each re-read and decide
again, so the queue never lists more than ``limit`` holders. What a change asks for is sent as
commands on the members' partitions (JetStream, de-duplicated by msg id): ``admit`` to each run
given a slot, ``cancel`` to each member a ``cancel_in_progress`` newcomer supersedes. Their
engines decide them into each run's own log.

A run holds a slot from its grant until it leaves. A holder that can no longer be running (its
end in the log and no give-back: the engine died in between) is found when the group is full: a
holder listed for longer than ``STALE_AFTER`` whose workflow actor's newest event is an end (or
which has no event left) is dropped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Final

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from actors import group_queue, groups
from actors.group_queue import GroupQueue, Member, Outcome
from events import subjects
from events.requests import AdmitRequest, CancelRequest, request_msg_id
from events.store import ActorRef, EventStore

_log = structlog.get_logger("jetwork.engine")
STALE_AFTER: Final = 10.0
_TRIES: Final = 32
# A workflow actor whose newest event is one of these holds no slot (``WorkflowRestarted`` and
# ``WorkflowDeleted`` come only after an end).
_OVER: Final = frozenset(
    {
        "WorkflowSucceeded",
        "WorkflowFailed",
        "WorkflowCancelled",
        "WorkflowRestarted",
        "WorkflowDeleted",
    }
)


class Groups:
    """Enters runs into their groups' queues and takes them out, for the engine's reactions."""

    def __init__(self, nc: NATS, store: EventStore, clock: Callable[[], float] = time.time):
        self._nc = nc
        self._store = store
        self._clock = clock
        self._kv: KeyValue | None = None

    async def start(self) -> None:
        self._kv = await self._nc.jetstream().key_value(subjects.KV_CONCURRENCY)

    async def run(self, call: groups.GroupCall) -> None:
        if isinstance(call, groups.Enter):
            await self.enter(call)
        else:
            await self.leave(call)

    async def enter(self, call: groups.Enter) -> None:
        member = Member(workflow_id=call.workflow_id, run=call.run, since=self._clock())

        def decide(queue: GroupQueue) -> Outcome:
            return group_queue.enter(
                queue, member, limit=call.limit, cancel_in_progress=call.cancel_in_progress
            )

        outcome = await self._change(call.group, decide, stale_check=True)
        if outcome is None:
            return
        held = outcome.queue.holds(member)
        again = held and not any(member.same_run(m) for m in outcome.granted)
        granted = outcome.granted + ((member,) if again else ())
        await self._tell(call.group, granted, outcome.superseded, newcomer=call.workflow_id)

    async def leave(self, call: groups.Leave) -> None:
        def decide(queue: GroupQueue) -> Outcome:
            return group_queue.leave(queue, call.workflow_id, call.run, now=self._clock())

        outcome = await self._change(call.group, decide, stale_check=False)
        if outcome is not None:
            await self._tell(call.group, outcome.granted, (), newcomer=None)

    async def _change(
        self,
        group: str,
        decide: Callable[[GroupQueue], Outcome],
        *,
        stale_check: bool,
    ) -> Outcome | None:
        """Apply ``decide`` to the group's queue by compare-and-set; None when nothing changed."""
        assert self._kv is not None, "start() the groups first"
        for _ in range(_TRIES):
            queue, revision = await self._read(group)
            outcome = decide(queue)
            if stale_check and len(outcome.queue.holders) >= outcome.queue.limit:
                gone = await self._gone(outcome.queue)
                if gone:
                    dropped = group_queue.without(outcome.queue, gone, now=self._clock())
                    _log.info("stale concurrency group members dropped", group=group,
                              members=sorted(gone))  # fmt: skip
                    outcome = Outcome(
                        dropped.queue, outcome.granted + dropped.granted, outcome.superseded
                    )
            if outcome.queue == queue:
                return outcome  # nothing to write (a look that changed nothing)
            if await self._write(group, outcome.queue, revision):
                return outcome
        raise TimeoutError(f"concurrency group {group}: lost {_TRIES} races for its queue")

    async def _read(self, group: str) -> tuple[GroupQueue, int]:
        assert self._kv is not None
        try:
            entry = await self._kv.get(groups.key(group))
        except KeyNotFoundError:
            return GroupQueue(), 0
        if not entry.value:
            return GroupQueue(), entry.revision or 0
        return GroupQueue.model_validate(orjson.loads(entry.value)), entry.revision or 0

    async def _write(self, group: str, queue: GroupQueue, revision: int) -> bool:
        assert self._kv is not None
        data = queue.model_dump_json().encode()
        with contextlib.suppress(KeyWrongLastSequenceError):
            if revision:
                await self._kv.update(groups.key(group), data, last=revision)
            else:
                await self._kv.create(groups.key(group), data)
            return True
        return False

    async def _gone(self, queue: GroupQueue) -> set[tuple[str, int]]:
        """Holders listed for a while whose workflow has ended in the log (a lost give-back)."""
        now = self._clock()
        gone = set()
        for holder in queue.holders:
            if now - holder.since < STALE_AFTER:
                continue
            last = await self._store.last_event(ActorRef.workflow(holder.workflow_id))
            if last is None or last.event.event_type in _OVER:
                gone.add((holder.workflow_id, holder.run))
        return gone

    async def _tell(
        self,
        group: str,
        granted: tuple[Member, ...],
        superseded: tuple[Member, ...],
        *,
        newcomer: str | None,
    ) -> None:
        js = self._nc.jetstream()
        for member in granted:
            admit = AdmitRequest(workflow_id=member.workflow_id, run=member.run, group=group)
            headers = {"Nats-Msg-Id": request_msg_id(admit)}
            await js.publish(admit.subject(), admit.model_dump_json().encode(), headers=headers)
        for member in superseded:
            assert newcomer is not None  # only a newcomer supersedes
            cancel = CancelRequest(
                workflow_id=member.workflow_id,
                reason=groups.superseded_reason(newcomer, group),
            )
            # One cancel per member and newcomer (a look again sends the same one).
            headers = {"Nats-Msg-Id": f"{request_msg_id(cancel)}.by.{newcomer}.r{member.run}"}
            await js.publish(cancel.subject(), cancel.model_dump_json().encode(), headers=headers)
