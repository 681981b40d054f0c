"""Reading a stream by direct get: batched, no consumer, one long-lived reply inbox.

One request (``{"seq", "next_by_subj", "batch"}``) returns many messages up to an end-of-batch
status; replies are collected by a subscription callback and the reader is woken once, at the
end. See docs/architecture.md, "Reading".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, overload

import orjson
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from events import subjects
from events.errors import StoreError
from events.inline_delivery import subscribe_block
from events.nats_speedups import process_headers

_READ_BATCH = 10_000
# Up to this many messages pending, single indexed gets beat a batch (see ``_read_once``).
_SINGLE_GETS_UP_TO = 8
# Waiting out a lagging replica: first pause, doubled each time, given up after this much.
_LAG_FIRST_WAIT = 0.002
_LAG_PATIENCE = 1.0
_EPOCH = datetime.fromtimestamp(0, UTC)
_NATS_STAMP_LENGTH = len("2026-12-07T04:43:51.612840599Z")
_MULTI_LAST_CHUNK = 200  # subjects per multi-last request (the server caps a request's size)
_GONE = frozenset({"DEL", "PURGE"})  # KV operations that mean "no value"
_FRACTION = re.compile(r"(\d*)(.*)")  # a timestamp's fraction digits, then its zone
_STATUS_LINE = b"NATS/1.0 "  # a reply with an inline status (its first line goes on)
_STATUS = "Status"
_MSG_ID = "Nats-Msg-Id"
_NATS_MSG_ID = _MSG_ID.encode()
_MSG_ID_LINE = b"\r\n" + _NATS_MSG_ID + b":"
_PLAIN_FIRST_LINE = b"NATS/1.0\r\n"
# The headers nats-server adds last to a direct get's reply, in its order (``_fields_found``).
_SERVER_HEADERS = re.compile(
    rb"\nNats-Subject: ([^\r\n]*)\r\nNats-Sequence: ([0-9]+)\r\nNats-Time-Stamp: ([^\r\n]*)\r\n"
    rb"(?:Nats-Num-Pending: [0-9]+\r\nNats-Last-Sequence: [0-9]+\r\n)?\r\n\Z"
)


class _HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


Sequenced = TypeVar("Sequenced", bound=_HasSeq)  # what a read makes of each message
Converted = TypeVar("Converted")


@dataclass(slots=True)
class StoredMessage:
    """A raw message read back by sequence (used to recognise our own earlier writes).

    Not frozen, though nothing changes one: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, 0.6 µs more per message read (a history's every event).
    """

    seq: int
    subject: str
    data: bytes
    header_block: bytes | None  # as the server sent it (``NATS/1.0\r\n...\r\n\r\n``)
    time: datetime = _EPOCH
    msg_id: str | None = None  # its ``Nats-Msg-Id`` header
    _parsed: dict[str, str] | None = field(default=None, compare=False, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Every header (the server's ``Nats-*`` ones too), parsed on first use: a history's
        reader needs only the fields above, found in the block without parsing it all."""
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = process_headers(self.header_block) or {}
        return parsed

    @property
    def is_tombstone(self) -> bool:
        """A KV delete or purge marker: the key has no value."""
        return self.headers.get("KV-Operation") in _GONE


def _as_is(message: StoredMessage) -> StoredMessage:
    return message


class DirectReader:
    """Direct-get reads of one stream (needs ``allow_direct``)."""

    def __init__(self, nc: NATS, *, stream: str, timeout: float) -> None:
        self._nc = nc
        self._stream = stream
        self._timeout = timeout
        self._replies: dict[str, _PendingRead] = {}
        self._inbox: str | None = None
        self._subscription: Subscription | None = None
        self._inbox_lock = asyncio.Lock()
        self._tokens = itertools.count()

    async def read_raw(
        self, filter_subject: str, *, from_seq: int = 1, min_seq: int = 0
    ) -> list[StoredMessage]:
        """Every message on ``filter_subject`` from ``from_seq``, in order (``read``)."""
        return await self.read(filter_subject, _as_is, from_seq=from_seq, min_seq=min_seq)

    async def read(
        self,
        filter_subject: str,
        convert: Callable[[StoredMessage], Sequenced],
        *,
        from_seq: int = 1,
        min_seq: int = 0,
    ) -> list[Sequenced]:
        """Every message on ``filter_subject`` from ``from_seq``, in order, each made what
        ``convert`` makes of it (an event: ``EventStore.read``) as it arrives.

        Converting on arrival: the server sends a long batch over a time the reader would
        otherwise spend waiting (a history of 2,006 events: the server's ~21 ms of sending
        against ~19 ms of the reader's taking the messages in), so decoding then is nearly free,
        where decoding after the last message added its ~8 ms to every read. What ``convert``
        raises ends the read with it.

        ``min_seq``: a sequence on this filter the reader knows exists (the event it reacts to,
        its own append). On a replicated stream any replica answers a direct get and a follower
        may lag the leader; a read that does not reach ``min_seq`` came from a lagging replica
        and is repeated (briefly) until one answers that has it.
        """
        delay = _LAG_FIRST_WAIT
        while True:
            items = await self._read_once(filter_subject, from_seq, convert)
            if not min_seq or min_seq < from_seq or (items and items[-1].seq >= min_seq):
                return items
            if delay > _LAG_PATIENCE:
                raise StoreError(
                    f"no replica of {self._stream} has sequence {min_seq} of {filter_subject} "
                    "yet (replicas lagging)",
                    retryable=True,
                )
            await asyncio.sleep(delay)
            delay *= 2

    async def _read_once(
        self, filter_subject: str, from_seq: int, convert: Callable[[StoredMessage], Sequenced]
    ) -> list[Sequenced]:
        """Every message on the filter from ``from_seq``, as the answering replica has them.

        Why not one big batch: in batch mode nats-server 2.15 finds the first match through
        its subject index but then scans every later message of the stream, up to the batch's
        last match or, when fewer match, to the stream's end (measured on a 50k-message stream:
        a batch read of one workflow's 5 events cost 6-7 ms of server CPU, a single indexed get
        0.1 ms). So: the first message and how many follow (``batch: 1``, indexed), then a few
        single indexed gets, or, for many, batches of exactly what is pending, so that the
        scan stops at the last match instead of the end of the stream.
        """
        first, pending = await self.batch(
            {"seq": max(1, from_seq), "next_by_subj": filter_subject, "batch": 1}, convert
        )
        items = list(first)
        while items and pending > 0:
            request: dict[str, Any] = {"seq": items[-1].seq + 1, "next_by_subj": filter_subject}
            if pending <= _SINGLE_GETS_UP_TO:
                found, _ = await self.batch(request, convert)
                pending -= 1
            else:
                batch = {**request, "batch": min(pending, _READ_BATCH)}
                found, pending = await self.batch(batch, convert)
            if not found:
                break
            items.extend(found)
        return items

    async def get(self, seq: int, *, exists: bool = False) -> StoredMessage | None:
        """The message at ``seq``, or None.

        ``exists``: the server just named ``seq`` (a duplicate ack, a conflict's last sequence),
        so a replica without it lags and is waited out as in ``read_raw``, rather than taken
        for an answer (a lost ack would otherwise read as a conflict, or as a foreign msg id).
        """
        delay = _LAG_FIRST_WAIT
        while True:
            batch, _ = await self.batch({"seq": seq})
            if batch or not exists:
                return batch[0] if batch else None
            if delay > _LAG_PATIENCE:
                return None
            await asyncio.sleep(delay)
            delay *= 2

    async def last(self, filter_subject: str) -> StoredMessage | None:
        # Direct get's last_by_subj takes wildcards: the newest message matching the filter.
        batch, _ = await self.batch({"last_by_subj": filter_subject})
        return batch[0] if batch else None

    async def next(
        self, filter_subject: str, *, from_seq: int, limit: int
    ) -> tuple[list[StoredMessage], int]:
        """Up to ``limit`` messages on ``filter_subject`` from ``from_seq`` on, in stream order,
        and how many more match after the last one returned (one request: mind the server's
        scan, ``_read_once``)."""
        request = {"seq": max(1, from_seq), "next_by_subj": filter_subject, "batch": limit}
        return await self.batch(request)

    async def all(self, filter_subject: str, *, page: int = 1000) -> list[StoredMessage]:
        """Every message on ``filter_subject`` (for small sets: live workers, one generation)."""
        found: list[StoredMessage] = []
        next_seq = 1
        while True:
            batch, pending = await self.next(filter_subject, from_seq=next_seq, limit=page)
            found += batch
            if not batch or pending == 0:
                return found
            next_seq = batch[-1].seq + 1

    async def last_of_each(self, subjects: Sequence[str]) -> dict[str, StoredMessage]:
        """The newest message of each literal subject that has one (one request per chunk)."""
        chunks = [
            list(subjects[i : i + _MULTI_LAST_CHUNK])
            for i in range(0, len(subjects), _MULTI_LAST_CHUNK)
        ]
        replies = await asyncio.gather(
            *(self.batch({"multi_last": chunk, "batch": len(chunk)}) for chunk in chunks)
        )
        return {stored.subject: stored for found, _ in replies for stored in found}

    @overload
    async def batch(self, request: dict[str, Any]) -> tuple[list[StoredMessage], int]: ...

    @overload
    async def batch(
        self, request: dict[str, Any], convert: Callable[[StoredMessage], Converted]
    ) -> tuple[list[Converted], int]: ...

    async def batch(
        self,
        request: dict[str, Any],
        convert: Callable[[StoredMessage], Any] = _as_is,
    ) -> tuple[list[Any], int]:
        """One direct-get request; the replies are collected by ``_on_reply`` up to the end,
        each made what ``convert`` makes of it as it arrives (as they are by default)."""
        inbox = await self._reply_inbox()
        token = str(next(self._tokens))
        pending = _PendingRead(batched="batch" in request, convert=convert)
        self._replies[token] = pending
        try:
            await self._nc.publish(
                subjects.direct_get(self._stream), orjson.dumps(request), reply=f"{inbox}.{token}"
            )
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives with
            # the reply (events/tasks.py); asyncio.timeout does not.
            async with asyncio.timeout(self._timeout):
                status, remaining = await pending.done
        except TimeoutError:
            raise StoreError(f"reading {self._stream} timed out", retryable=True) from None
        finally:
            self._replies.pop(token, None)
        if status in ("204", "404", None):
            return pending.messages, remaining
        if status == "503":
            raise StoreError(
                f"no server answers direct gets on {self._stream} (no stream leader or replica "
                "right now, or the topology is not created)",
                retryable=True,
            )
        raise StoreError(f"direct get on {self._stream} failed: status {status}")

    async def _reply_inbox(self) -> str:
        if self._inbox is None:
            async with self._inbox_lock:
                if self._inbox is None:
                    inbox = self._nc.new_inbox()
                    self._subscription = await subscribe_block(
                        self._nc, f"{inbox}.*", self._on_reply
                    )
                    self._inbox = inbox
        return self._inbox

    async def close(self) -> None:
        """Drop the reply subscription (a later read subscribes again)."""
        async with self._inbox_lock:
            subscription, self._subscription, self._inbox = self._subscription, None, None
        if subscription is not None:
            with contextlib.suppress(Exception):  # a closed connection has none left anyway
                await subscription.unsubscribe()

    def _on_reply(self, subject: bytes, _reply: bytes, data: bytes, block: bytes | None) -> None:
        # Runs once per reply message: collect here, wake the reader only at the end of a batch.
        pending = self._replies.get(subject[subject.rfind(b".") + 1 :].decode())
        if pending is None or pending.done.done():
            return
        if block is not None and block.startswith(_STATUS_LINE):  # the end of a batch, an error
            headers = process_headers(block) or {}
            status = headers.get(_STATUS)
            if status is not None:
                remaining = int(headers.get("Nats-Num-Pending", "0") or 0)
                pending.done.set_result((status, remaining))
                return
        try:
            message = stored_message(data, block)
        except ValueError as exc:
            pending.done.set_exception(
                StoreError(f"direct get on {self._stream}: a reply that is not a message ({exc})")
            )
            return
        try:
            pending.messages.append(pending.convert(message))
        except Exception as exc:  # the reader raises it (a message that is no event...)
            pending.done.set_exception(exc)
            return
        if not pending.batched:
            pending.done.set_result((None, 0))


class _PendingRead:
    __slots__ = ("batched", "convert", "done", "messages")

    def __init__(self, *, batched: bool, convert: Callable[[StoredMessage], Any]) -> None:
        self.batched = batched
        self.convert = convert
        self.messages: list[Any] = []
        self.done: asyncio.Future[tuple[str | None, int]] = (
            asyncio.get_running_loop().create_future()
        )


def stored_message(data: bytes, block: bytes | None) -> StoredMessage:
    """The message a direct get returned with ``block`` as its headers (ValueError: no
    sequence or subject, which every stored message has)."""
    found = _fields_found(block) if block is not None else None
    if found is not None:
        seq, subject, stamp, msg_id = found
        return StoredMessage(seq, subject, data, block, parse_nats_time(stamp), msg_id)
    headers = process_headers(block) or {}
    try:
        seq, subject = int(headers["Nats-Sequence"]), headers["Nats-Subject"]
    except KeyError as exc:
        raise ValueError(f"no {exc} header") from None
    time = parse_nats_time(headers.get("Nats-Time-Stamp", ""))
    return StoredMessage(seq, subject, data, block, time, headers.get(_MSG_ID), headers)


def _fields_found(block: bytes) -> tuple[int, str, str, str | None] | None:
    """Sequence, subject, time stamp and msg id straight from the block, when they are written
    as servers and clients write them; None when a parse of every header must decide.

    A parse of every header cost ~2 µs a message, which a history's reads paid for every
    event. nats-server adds its headers after the stored ones, in this order: taken only when
    they end the block, so no later line names them again (the last wins in a parse too). The
    msg id, a stored header, is taken only from a block that names it once. Same values as a
    parse of every header (tests/unit/test_direct_get_fields.py)."""
    server = _SERVER_HEADERS.match(block, block.rfind(b"\r\nNats-Subject: ") + 1)
    if server is None or not block.isascii() or not block.startswith(_PLAIN_FIRST_LINE):
        return None
    subject, seq, stamp = server.groups()
    msg_id = None
    at = block.find(_MSG_ID_LINE)
    if at >= 0:
        if block.count(_NATS_MSG_ID) != 1:
            return None
        start = at + len(_MSG_ID_LINE)
        msg_id = block[start : block.index(b"\r\n", start)].strip().decode()
    elif _NATS_MSG_ID in block:
        return None
    return int(seq), subject.strip().decode(), stamp.strip().decode(), msg_id


def parse_nats_time(value: str) -> datetime:
    """Parse JetStream's RFC 3339 timestamps, which carry nanoseconds (Python takes micro)."""
    if len(value) == _NATS_STAMP_LENGTH and value[-1] == "Z" and value[19] == ".":
        # What nats-server writes (UTC, nine digits): a cut and one C call, per event read.
        return datetime.fromisoformat(value[:26] + "+00:00")
    if not value:
        return _EPOCH
    head, _, rest = value.partition(".")
    if not rest:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    fraction = _FRACTION.match(rest)
    digits, zone = (fraction.group(1), fraction.group(2)) if fraction else ("", rest)
    zone = zone.replace("Z", "+00:00") or "+00:00"
    return datetime.fromisoformat(f"{head}.{digits[:6].ljust(6, '0')}{zone}")
