"""The event store: conditional appends per actor, replay, history and live subscription.

Append protocol (docs/architecture.md, "Appending"): every append names the actor's subject filter
and the last sequence the writer saw on it (``Nats-Expected-Last-Subject-Sequence`` +
``-Subject``), so exactly one writer wins each sequence. Several events of one decision go in one
atomic batch. ``Nats-Msg-Id`` is ``<command_id>:<index>``: a retry after a lost ack is recognised,
either by the server's de-duplication or by finding our own id at the sequence a conflict reports.

Reads use batched direct get (one request, many messages, no consumer) because replaying one actor
is the hot path of every decision; ``subscribe`` uses an ordered consumer for live tails.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig, DeliverPolicy

from events import subjects
from events.base import Event, RecordedEvent, recorded
from events.codec import decode, encode
from events.direct_get import DirectReader, StoredMessage, parse_nats_time
from events.errors import ConcurrencyConflict, PayloadTooLarge, StoreError, UndecodableEvent
from events.leader import newest_seq
from events.replies import Replies, encode_headers

_log = structlog.get_logger("jetwork.store")

_WRONG_LAST_SEQ = 10071
# Clustered streams: another append on the same filter is still being replicated (no sequence
# given). On a first attempt that is another writer: a conflict. On a retry it may be our own
# earlier attempt, so wait for it to settle and ask again.
_WRONG_LAST_SEQ_IN_FLIGHT = 10164
# Clustered streams: a message with this msg id (an earlier attempt of ours) is being replicated.
_DUPLICATE_IN_FLIGHT = 10158
_BATCH_DUPLICATE_ID = 10201
# Pauses between attempts while no stream leader answers (a leader election takes 4-9 s with
# nats-server's raft defaults; a restarting server about as long).
_FIRST_PAUSE = 0.25
_MAX_PAUSE = 2.0
_LAST_SEQ = re.compile(r"(\d+)\s*$")
# Headers a stored message carries that are protocol, not payload.
EXPECTED_SEQ_HEADER = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_FILTER_HEADER = "Nats-Expected-Last-Subject-Sequence-Subject"
_MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True, slots=True)
class ActorRef:
    """One actor's stream of events, identified by its subject filter: ``evt.<p>.<wf>.wf.*`` for
    a workflow, ``evt.<p>.<wf>.job.<job>.>`` for a job (whose ``JobQueued`` has one more token)."""

    filter: str

    @classmethod
    def workflow(cls, wf_id: str) -> ActorRef:
        return cls(subjects.workflow_actor_filter(wf_id))

    @classmethod
    def job(cls, wf_id: str, job: str) -> ActorRef:
        return cls(subjects.job_actor_filter(wf_id, job))

    def owns(self, subject: str) -> bool:
        prefix = self.filter[:-1]  # "...wf.*" or "...job.<job>.>": the rest is the event's
        if not subject.startswith(prefix):
            return False
        return self.filter[-1] == ">" or "." not in subject[len(prefix) :]


@dataclass
class Loaded:
    """Events read tolerantly: the good ones, what was skipped, and the true last sequence."""

    events: list[RecordedEvent] = field(default_factory=list)
    skipped: list[tuple[StoredMessage, UndecodableEvent]] = field(default_factory=list)
    last_seq: int = 0


__all__ = ["ActorRef", "EventStore", "Loaded", "StoredMessage", "parse_nats_time"]


class EventStore:
    """Reads and conditionally appends events on the events stream."""

    def __init__(
        self,
        nc: NATS,
        *,
        stream: str = subjects.EVENTS_STREAM,
        request_timeout: float = 5.0,
        attempts: int = 3,
        patience: float | None = None,
    ) -> None:
        """``attempts`` bounds the appends sent without an answer (``request_timeout`` each);
        ``patience`` (default: their product) bounds the time spent retrying an append that no
        stream leader accepted (no responders, 503, a clustered write still in flight)."""
        self._nc = nc
        self._stream = stream
        self._timeout = request_timeout
        self._attempts = attempts
        self._patience = attempts * request_timeout if patience is None else patience
        self._reader = DirectReader(nc, stream=stream, timeout=request_timeout)
        self._replies = Replies(nc)

    @property
    def max_payload(self) -> int:
        return int(self._nc.max_payload)

    # --- appending ---------------------------------------------------------------------------

    async def append(
        self,
        actor: ActorRef,
        events: Sequence[Event],
        *,
        expected_seq: int,
        command_id: str,
    ) -> int:
        """Append ``events`` to ``actor`` if its last sequence is still ``expected_seq``.

        Returns the stream sequence of the last appended event. Raises ``ConcurrencyConflict``
        when another writer got there first, ``PayloadTooLarge`` for an oversized event.
        """
        if not events:
            return expected_seq
        messages = [self.prepare(actor, event) for event in events]
        msg_ids = [f"{command_id}:{index}" for index in range(len(messages))]
        # Every retry sends the same msg ids: whatever an earlier attempt left in the log is
        # recognised (de-dup, or our id at the sequence a conflict reports), never doubled.
        deadline = time.monotonic() + self._patience
        pause = _FIRST_PAUSE
        sent = unanswered = 0
        while True:
            sent += 1
            try:
                reply = await self._publish(actor, messages, msg_ids, expected_seq)
                return await self._settle(actor, reply, msg_ids, expected_seq, retry=sent > 1)
            except (TimeoutError, NatsTimeoutError):
                # The ack may be lost while the write landed: retrying with the same ids is safe.
                unanswered += 1
                _log.warning("append timed out, retrying", actor=actor.filter, attempt=sent)
                if unanswered >= self._attempts:
                    raise StoreError(
                        f"append to {actor.filter} got no answer after {unanswered} attempts",
                        retryable=True,
                    ) from None
            except _Unsettled as unsettled:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StoreError(
                        f"append to {actor.filter} not accepted within {self._patience:.0f}s: "
                        f"{unsettled}",
                        retryable=True,
                    ) from None
                _log.info("append not settled, retrying", actor=actor.filter, why=str(unsettled))
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, _MAX_PAUSE)

    def prepare(self, actor: ActorRef, event: Event) -> tuple[str, bytes]:
        """The subject and payload of ``event``; refuses one not of ``actor`` or too large."""
        subject: str = event.subject()  # type: ignore[attr-defined]
        if not actor.owns(subject):
            raise ValueError(f"event {event.event_type} on {subject} does not belong to {actor}")
        payload = encode(event)
        # Headers add a few hundred bytes; keep a margin so the server never has to refuse.
        limit = self.max_payload - 1024
        if len(payload) > limit:
            raise PayloadTooLarge(
                what=f"{event.event_type} for {subject}", size=len(payload), limit=limit
            )
        return subject, payload

    async def _publish(
        self,
        actor: ActorRef,
        messages: list[tuple[str, bytes]],
        msg_ids: list[str],
        expected_seq: int,
    ) -> dict[str, Any]:
        cas = {EXPECTED_SEQ_HEADER: str(expected_seq), EXPECTED_FILTER_HEADER: actor.filter}
        try:
            if len(messages) == 1:
                subject, payload = messages[0]
                headers = encode_headers({**cas, _MSG_ID: msg_ids[0]})
                msg = await self._replies.request(
                    subject, payload, headers=headers, timeout=self._timeout
                )
            else:
                msg = await self._publish_batch(messages, msg_ids, cas)
        except NoRespondersError:
            # No stream leader right now (a restarting server, a clustered leader election), or
            # no stream at all (topology never created): the first passes, so retry either way.
            raise _Unsettled(
                f"no JetStream stream answers on {messages[0][0]} (no stream leader right now, "
                "or the topology is not created: events.topology.ensure_topology)"
            ) from None
        reply: dict[str, Any] = orjson.loads(msg.data)
        return reply

    async def _publish_batch(
        self, messages: list[tuple[str, bytes]], msg_ids: list[str], cas: dict[str, str]
    ) -> Msg:
        # Atomic batch: all or nothing. The CAS check rides on the first message; nats-py has no
        # batch API, so messages 1..n-1 are plain publishes and the commit is a request.
        batch_id = uuid.uuid4().hex
        last = len(messages)
        for index, (subject, payload) in enumerate(messages[:-1], start=1):
            headers = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(index)}
            headers[_MSG_ID] = msg_ids[index - 1]
            if index == 1:
                headers.update(cas)
            await self._nc.publish(subject, payload, headers=headers)
        subject, payload = messages[-1]
        commit = {
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(last),
            "Nats-Batch-Commit": "1",
            _MSG_ID: msg_ids[-1],
        }
        return await self._nc.request(subject, payload, timeout=self._timeout, headers=commit)

    async def _settle(
        self,
        actor: ActorRef,
        reply: dict[str, Any],
        msg_ids: list[str],
        expected_seq: int,
        *,
        retry: bool,
    ) -> int:
        error = reply.get("error")
        if error is None:
            seq = int(reply["seq"])
            if reply.get("duplicate"):
                await self._check_duplicate_is_ours(actor, seq, msg_ids[0])
            return seq
        code = int(error.get("err_code", 0))
        description = str(error.get("description", ""))
        if code == _DUPLICATE_IN_FLIGHT or (code == _WRONG_LAST_SEQ_IN_FLIGHT and retry):
            raise _Unsettled(f"an earlier attempt may still be replicating: {description}")
        if int(error.get("code", 0)) == 503:
            raise _Unsettled(f"JetStream unavailable: {description} ({code})")
        if code in (_WRONG_LAST_SEQ, _WRONG_LAST_SEQ_IN_FLIGHT):
            match = _LAST_SEQ.search(description)
            actual = int(match.group(1)) if match else None
            if actual and await self._holds_our_write(actual, msg_ids[-1]):
                return actual
            raise ConcurrencyConflict(
                actor=actor.filter, expected_seq=expected_seq, actual_seq=actual
            )
        if code == _BATCH_DUPLICATE_ID:
            # A previous attempt of this very batch landed; find where.
            found = await self._find_own_write(actor, msg_ids[-1])
            if found is not None:
                return found
            raise ConcurrencyConflict(
                actor=actor.filter, expected_seq=expected_seq, actual_seq=None
            )
        raise StoreError(f"append to {actor.filter} refused by JetStream: {description} ({code})")

    async def _check_duplicate_is_ours(self, actor: ActorRef, seq: int, msg_id: str) -> None:
        # De-duplication is by msg id alone: a command id reused for another actor would silently
        # "succeed" with someone else's sequence. Refuse that loudly instead.
        message = await self._reader.get(seq, exists=True)
        if message is None or not actor.owns(message.subject):
            where = message.subject if message else "a message no longer stored"
            raise StoreError(
                f"append to {actor.filter} was de-duplicated against {where} (msg id {msg_id}): "
                "command ids must be unique per command"
            )

    async def _holds_our_write(self, seq: int, msg_id: str) -> bool:
        message = await self._reader.get(seq, exists=True)
        return message is not None and message.msg_id == msg_id

    async def _find_own_write(self, actor: ActorRef, msg_id: str) -> int | None:
        last = await self._last_message(actor.filter)
        if last is not None and last.msg_id == msg_id:
            return last.seq
        return None

    # --- reading ------------------------------------------------------------------------------

    async def load(
        self, actor: ActorRef, *, from_seq: int = 1, current: bool = False
    ) -> list[RecordedEvent]:
        """Every event of one actor from ``from_seq`` on, in order; ``current``: everything
        stored when the call began, even when a lagging replica answers (``events/leader.py``)."""
        return await self.read(actor.filter, from_seq=from_seq, current=current)

    async def history(self, wf_id: str, *, from_seq: int = 1) -> list[RecordedEvent]:
        """The whole history of one workflow (workflow and job actors), in log order."""
        return await self.read(subjects.workflow_events(wf_id), from_seq=from_seq)

    async def read(
        self, filter_subject: str, *, from_seq: int = 1, current: bool = False
    ) -> list[RecordedEvent]:
        """Decode every event on ``filter_subject`` from ``from_seq``; raise on a bad one."""
        min_seq = await self.newest_seq(filter_subject) if current else 0
        return await self._reader.read(
            filter_subject, self._decode, from_seq=from_seq, min_seq=min_seq
        )

    async def newest_seq(self, filter_subject: str) -> int:
        """The newest sequence on ``filter_subject`` as the stream's leader has it (0: none)."""
        return await newest_seq(self._nc, self._stream, filter_subject, timeout=self._timeout)

    async def read_tolerant(self, filter_subject: str, *, from_seq: int = 1) -> Loaded:
        """Like ``read``, but messages that are not events are skipped and reported, not raised.

        ``last_seq`` still counts them: it is what the next CAS append on the filter expects.
        For hosts that must keep working when someone published garbage on an event subject.
        """
        loaded = Loaded()
        for message in await self.read_raw(filter_subject, from_seq=from_seq):
            loaded.last_seq = message.seq
            try:
                loaded.events.append(self._decode(message))
            except UndecodableEvent as exc:
                loaded.skipped.append((message, exc))
        return loaded

    async def read_raw(
        self, filter_subject: str, *, from_seq: int = 1, min_seq: int = 0
    ) -> list[StoredMessage]:
        """Raw messages on ``filter_subject`` (see ``DirectReader.read_raw`` for ``min_seq``)."""
        return await self._reader.read_raw(filter_subject, from_seq=from_seq, min_seq=min_seq)

    async def get(self, seq: int) -> StoredMessage | None:
        return await self._reader.get(seq)

    async def close(self) -> None:
        """Drop the reply subscriptions (for a store on a connection that lives on)."""
        await self._reader.close()
        await self._replies.close()

    async def _last_message(self, filter_subject: str) -> StoredMessage | None:
        return await self._reader.last(filter_subject)

    async def last_event(self, actor: ActorRef) -> RecordedEvent | None:
        """The actor's newest event (one direct get by subject), None when it has none."""
        message = await self._last_message(actor.filter)
        return self._decode(message) if message is not None else None

    async def last_seq(self, actor: ActorRef) -> int:
        """The actor's last sequence (0 when it has no events): what the next append expects."""
        last = await self._last_message(actor.filter)
        return last.seq if last else 0

    def _decode(self, message: StoredMessage) -> RecordedEvent:
        seq, subject = message.seq, message.subject
        event = decode(message.data, subject=subject, seq=seq)
        return recorded(seq, subject, message.time, event, message.msg_id)

    # --- live subscription ---------------------------------------------------------------------

    async def subscribe(
        self, filter_subject: str = subjects.EVENTS_ALL, *, from_seq: int | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Yield events on ``filter_subject`` as they are appended (from ``from_seq`` if given).

        An undecodable message is logged and skipped: a live tail must not die on garbage.
        """
        js = self._nc.jetstream()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if from_seq else DeliverPolicy.NEW,
            opt_start_seq=from_seq,
        )
        sub = await js.subscribe(
            filter_subject, stream=self._stream, ordered_consumer=True, config=config
        )
        try:
            async for msg in sub.messages:
                meta = msg.metadata
                try:
                    event = decode(msg.data, subject=msg.subject, seq=meta.sequence.stream)
                except UndecodableEvent as exc:
                    _log.error("skipping undecodable event", error=str(exc))
                    continue
                yield RecordedEvent(
                    seq=meta.sequence.stream,
                    subject=msg.subject,
                    time=meta.timestamp,
                    event=event,
                    msg_id=(msg.headers or {}).get(_MSG_ID),
                )
        finally:
            await sub.unsubscribe()


class _Unsettled(Exception):
    """No stream leader took the append (yet): wait a moment and send the same ids again."""
