"""Label routing (design A) and the dispatch of jobs to workers.

A job's **requirement set** is its labels plus ``@<handler>`` when it ``uses:`` a Python handler.
Its canonical **token** (sorted members joined by ``+``, ``~`` when empty) names its dispatch
subject ``job.<token>``. Every label set in use is recorded in KV ``jw_labelsets`` under the name
of its durable consumer (``ls-<hash>``: tokens may hold characters that KV keys and consumer names
do not allow). A worker pulls from every label set whose requirements its capabilities (labels plus
``@<handler>`` per registered handler) include.

The routing functions are pure; ``Dispatcher`` is the engine's side of the I/O and
``DispatchMessage`` the one message format both sides use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoStreamResponseError,
    NotFoundError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events import subjects
from events.catalog import JobQueued
from events.errors import JetworkError, StoreError
from events.schedules import NearTimers, schedule_time

EMPTY_TOKEN: Final = "~"
"""The token of the empty requirement set: a job that runs on any worker."""
HANDLER_PREFIX: Final = "@"
SEPARATOR: Final = "+"
CONSUMER_PREFIX: Final = "ls-"
_HASH_HEX_DIGITS: Final = 16  # 64 bits: collisions are negligible for any real number of sets
# Clustered streams answer a publish whose msg id is being stored by another publisher with this.
_DUPLICATE_IN_FLIGHT: Final = 10158
_IN_FLIGHT_TRIES: Final = 5
_IN_FLIGHT_PAUSE: Final = 0.01
# The in-process timer of a delayed dispatch runs this much after the due time: a schedule the
# server fires on time (it does unless another fired within 250 ms) is then gone, not raced.
_DUE_GRACE: Final = timedelta(milliseconds=10)


def requirement_set(labels: Iterable[str], uses: str | None = None) -> frozenset[str]:
    """What a worker must offer to run a job: its labels, plus ``@<uses>`` for a handler job."""
    reqs = {subjects.require_token(label, what="label") for label in labels}
    if uses:
        reqs.add(HANDLER_PREFIX + subjects.require_token(uses, what="handler name"))
    return frozenset(reqs)


def capabilities(labels: Iterable[str], handlers: Iterable[str] = ()) -> frozenset[str]:
    """What a worker offers: its labels plus ``@<name>`` for every registered handler."""
    return frozenset(labels) | {HANDLER_PREFIX + name for name in handlers}


def serves(caps: frozenset[str], reqs: frozenset[str]) -> bool:
    """True when a worker with capabilities ``caps`` may run jobs requiring ``reqs``."""
    return reqs <= caps


def labelset_token(reqs: Iterable[str]) -> str:
    """The canonical subject token of a requirement set (``~`` for the empty set).

    Labels and handler names are ``[A-Za-z0-9_-]`` only, so neither ``+`` nor ``@`` can occur
    inside a member: the token is unambiguous and parses back with ``parse_token``.
    """
    members = sorted(reqs)
    return SEPARATOR.join(members) if members else EMPTY_TOKEN


def parse_token(token: str) -> frozenset[str]:
    """The requirement set a token names (inverse of ``labelset_token``)."""
    if token == EMPTY_TOKEN:
        return frozenset()
    return frozenset(token.split(SEPARATOR))


def consumer_name(token: str) -> str:
    """The durable consumer of a label set: ``ls-`` + a short stable hash of its token.

    Tokens may hold ``@``, ``+`` and ``~`` and be long; consumer names and KV keys may not.
    """
    digest = hashlib.sha256(token.encode()).hexdigest()[:_HASH_HEX_DIGITS]
    return f"{CONSUMER_PREFIX}{digest}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DispatchMessage(_Frozen):
    """The body of a dispatch on ``job.<token>``: which attempt of which job may be claimed.

    ``queued`` and ``queued_seq`` are a claim hint for attempt 1: the ``JobQueued`` event as
    appended and its stream sequence (then the job actor's whole history). With them a worker
    decides its claim without reading the log; the claim's CAS (expected sequence
    ``queued_seq``) proves the hint current, and a conflict falls back to reading the actor.
    Without them (a retry, an engine that does not send them) the worker reads the job actor.
    """

    workflow_id: str
    job: str
    attempt: int = Field(ge=1)
    queued_seq: int | None = Field(default=None, ge=1)
    queued: JobQueued | None = None

    def hint(self) -> tuple[JobQueued, int] | None:
        """The hint, if present and about this very job and attempt 1."""
        queued, seq = self.queued, self.queued_seq
        if queued is None or seq is None or self.attempt != 1:
            return None
        if (queued.workflow_id, queued.job, queued.attempt) != (self.workflow_id, self.job, 1):
            return None
        return queued, seq

    @property
    def msg_id(self) -> str:
        """``Nats-Msg-Id`` of the dispatch: one message per attempt within the window."""
        return f"{self.workflow_id}.{self.job}.{self.attempt}"

    def encode(self) -> bytes:
        # Aliases as the event store writes events (``with``); no hint, no hint keys.
        unhinted = {"queued", "queued_seq"} if self.queued is None else None
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude=unhinted)

    @classmethod
    def decode(cls, data: bytes) -> DispatchMessage:
        """Parse a dispatch body; ``InvalidDispatch`` says what is wrong with it."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise InvalidDispatch(f"not a dispatch message: {exc.errors()[0]['msg']}") from None


class LabelSet(_Frozen):
    """A ``jw_labelsets`` entry (key: the consumer name)."""

    token: str
    requirements: tuple[str, ...]

    @classmethod
    def of(cls, reqs: Iterable[str]) -> LabelSet:
        members = tuple(sorted(reqs))
        return cls(token=labelset_token(members), requirements=members)

    @property
    def consumer(self) -> str:
        return consumer_name(self.token)

    @property
    def subject(self) -> str:
        return subjects.dispatch(self.token)

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def decode(cls, data: bytes) -> LabelSet:
        try:
            labelset = cls.model_validate_json(data)
        except ValidationError as exc:
            raise InvalidDispatch(f"not a label set entry: {exc.errors()[0]['msg']}") from None
        if labelset_token(labelset.requirements) != labelset.token:
            raise InvalidDispatch(
                f"label set entry {labelset.token!r} does not match its requirements"
            )
        return labelset


class InvalidDispatch(JetworkError):
    """A dispatch message or label set entry is malformed."""


def schedule_id(message: DispatchMessage) -> str:
    """The ``jobsched.`` suffix of a delayed dispatch: one schedule per attempt."""
    return f"{message.workflow_id}.{message.job}.{message.attempt}"


class Dispatcher:
    """Publishes dispatches (the engine reacting to ``JobQueued``) and registers label sets."""

    def __init__(self, nc: NATS, *, timeout: float = 5.0, near: NearTimers | None = None) -> None:
        """``near``: in-process timers for delayed dispatches due soon (exact; see
        ``events.schedules``); without them a delayed dispatch waits for its schedule."""
        self._nc = nc
        self._near = near
        self._js = nc.jetstream(timeout=timeout)
        self._known: set[str] = set()
        self._labelsets: KeyValue | None = None

    async def dispatch(
        self,
        *,
        workflow_id: str,
        job: str,
        attempt: int,
        labels: Iterable[str],
        uses: str | None,
        not_before: datetime | None,
        now: datetime,
        queued: JobQueued | None = None,
        queued_seq: int | None = None,
    ) -> None:
        """Make ``attempt`` of ``job`` claimable: now, or from ``not_before`` on (a schedule).

        ``queued`` / ``queued_seq``: the ``JobQueued`` event of attempt 1 and its sequence, when
        the caller knows them (the claim hint, see ``DispatchMessage``); ignored otherwise.
        Idempotent within the duplicate window (``Nats-Msg-Id`` is ``<wf>.<job>.<attempt>``).
        Raises ``StoreError`` (retryable) when JetStream does not acknowledge.
        """
        labelset = LabelSet.of(requirement_set(labels, uses))
        await self.register(labelset)
        hinted = attempt == 1 and queued is not None and queued_seq is not None
        message = DispatchMessage(
            workflow_id=workflow_id,
            job=job,
            attempt=attempt,
            queued=queued if hinted else None,
            queued_seq=queued_seq if hinted else None,
        )
        headers = {"Nats-Msg-Id": message.msg_id}
        subject = labelset.subject
        delayed = not_before is not None and not_before > now
        if delayed:
            assert not_before is not None
            headers["Nats-Schedule"] = f"@at {schedule_time(not_before)}"
            headers["Nats-Schedule-Target"] = labelset.subject
            subject = subjects.job_schedule(schedule_id(message))
        seq = await self._publish(subject, message, headers)
        if delayed and self._near is not None:
            assert not_before is not None

            async def due() -> None:
                await self._dispatch_due(labelset, message, schedule_seq=seq)

            when = not_before + _DUE_GRACE
            self._near.schedule(when, due, what=f"dispatch {message.msg_id}")

    async def _dispatch_due(
        self, labelset: LabelSet, message: DispatchMessage, *, schedule_seq: int
    ) -> None:
        """The in-process timer of a near delayed dispatch (``events.schedules``).

        A schedule the server fired on time is gone (purged as it fired): nothing to do. Else
        publish the dispatch, then delete the schedule so that it does not fire a second one. In
        this order a crash in between costs a duplicate dispatch (the claim refuses the second),
        never a lost one; a duplicate also needs the server to fire within the ~1 ms between the
        check and the delete. The msg id differs from the schedule's (a duplicate for the server).
        """
        try:
            await self._js.get_msg(subjects.JOBS_STREAM, schedule_seq)
        except NotFoundError:
            return  # the schedule fired
        headers = {"Nats-Msg-Id": f"{message.msg_id}.due"}
        await self._publish(labelset.subject, message, headers)
        # Not found: it fired meanwhile. Unreachable: a duplicate at worst.
        with contextlib.suppress(NotFoundError, APIError, NatsTimeoutError, TimeoutError):
            await self._js.delete_msg(subjects.JOBS_STREAM, schedule_seq)

    async def _publish(
        self, subject: str, message: DispatchMessage, headers: dict[str, str]
    ) -> int:
        """Publish with the retries below; the stream sequence it got."""
        for attempt in range(_IN_FLIGHT_TRIES):
            try:
                ack = await self._js.publish(subject, message.encode(), headers=headers)
                return int(ack.seq)
            except (NatsTimeoutError, TimeoutError, NoStreamResponseError, NoRespondersError):
                raise StoreError(
                    f"dispatch of {message.msg_id} on {subject} was not acknowledged",
                    retryable=True,
                ) from None
            except APIError as exc:
                if exc.err_code != _DUPLICATE_IN_FLIGHT:
                    raise StoreError(
                        f"dispatch of {message.msg_id} refused: {exc.description}"
                    ) from None
            # Another engine publishes this very dispatch right now (engines that both react to
            # one JobQueued): once it is stored, ours is answered as a duplicate. Ask again.
            await asyncio.sleep(_IN_FLIGHT_PAUSE * 2**attempt)
        raise StoreError(
            f"dispatch of {message.msg_id}: the same dispatch stayed in process", retryable=True
        )

    async def register(self, labelset: LabelSet) -> None:
        """Record ``labelset`` in ``jw_labelsets`` once (create-if-absent, cached)."""
        if labelset.token in self._known:
            return
        try:
            if self._labelsets is None:
                self._labelsets = await self._js.key_value(subjects.KV_LABELSETS)
            await self._labelsets.create(labelset.consumer, labelset.encode())
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # Registered before, by us or another engine. (nats-py's create reads the key back
            # after a wrong-last-sequence answer; on a cluster a follower that has not stored the
            # other engine's write yet answers "not found".)
            pass
        except (NatsTimeoutError, TimeoutError, NoRespondersError):
            raise StoreError(
                f"registering label set {labelset.token!r} timed out", retryable=True
            ) from None
        except APIError as exc:
            raise StoreError(
                f"cannot register label set {labelset.token!r}: {exc.description}"
            ) from None
        self._known.add(labelset.token)
