"""The listing index: newest-first listing by status and name without scanning every workflow.

JetStream KV cannot list keys in order (a key listing walks the whole filter in stream order),
and every operation with a wildcard filter costs the server time in proportion to the number of
*subjects* it matches: with one subject per workflow, a listing of 100k workflows costs seconds.
So the index keeps few subjects and many messages:

- Stream ``JW_INDEX``, subject ``wfidx.g<generation>.<status>.<name>``: one small message per
  workflow saying "this workflow is in this status". When its status changes, the projector
  publishes the new entry and deletes the one before by sequence: a workflow has one entry at a
  time (running, paused, its end; an operator's retry makes an ended workflow run again).
  Filters (``wfidx.g1.failed.*``, ``wfidx.g1.*.release``) match at most statuses x names
  subjects.
- Bound marks on ``wfidx.g<generation>.bounds``: ``{through, bound}`` says that every entry at
  or before stream sequence ``through`` started at or before ``bound``. A mark is a fact read
  from the stream, not a writer's memory: its writer takes the newest mark and reads every entry
  after it up to the end (``through``: the last one it read). Entries are never added at or
  before a sequence that exists already and deletions only remove some, so a mark stays true
  however many projectors write entries or marks, in whatever order, and however late it is
  published. A projector marks after each batch that added entries.
- A listing reads the filter backwards in windows of stream positions (direct get, which starts
  at a sequence and goes forward: a probe of one message gives the number of matches from there
  on, a second request fetches exactly the window's). Alongside the probe it reads the first
  marks at or after the window's start: one whose ``through`` reaches the window bounds every
  entry not read yet. Once ``limit`` results started after that bound, no older entry can
  displace them, and the scan stops. Without such a mark (entries newer than every mark, or
  marks not written yet) the scan reads on: slower, never wrong. Windows grow 4x when they come
  back thin, so a rare status costs a few requests more, not a scan on the client.

Entries are hints, never the truth: the reader keeps one only if the workflow's stored summary
names the same index entry (see ``projections.store``), so a leftover entry of a crashed write
is never shown.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

import orjson
import structlog

from events import subjects
from events.errors import StoreError
from projections._nats import Direct, Publisher, Stored, describe, error_code
from projections.views import WorkflowView

_log = structlog.get_logger("jetwork.projector")
T = TypeVar("T")
_PAGE = 1000
_UNKNOWN_BOUND = 1 << 62  # no conclusion possible: keep reading
# Deleting a message that is not there (any more) is done already: nats-server 2.15 answers
# 10043 ("sequence not found") for one deleted inside the stream, 10057 ("no message found") for
# one below the stream's first sequence.
_ALREADY_GONE = frozenset({10057, 10043})
_MARKS_READ = 8  # marks read after a window's start to find one that reaches it


@dataclass(frozen=True, slots=True)
class IndexEntry:
    seq: int
    workflow_id: str
    name: str
    status: str
    started_us: int


@dataclass(frozen=True, slots=True)
class BoundMark:
    """Every entry at or before stream sequence ``through`` started at or before ``bound_us``."""

    seq: int
    through: int
    bound_us: int


class Entry(Protocol):
    """What a backward scan needs of an entry (an ``IndexEntry``, a ``keys.KeyEntry``)."""

    @property
    def seq(self) -> int: ...

    @property
    def workflow_id(self) -> str: ...

    @property
    def started_us(self) -> int: ...


E = TypeVar("E", bound=Entry)


@dataclass(frozen=True, slots=True)
class Window(Generic[E]):
    """Entries of one window (stream order) and what bounds every entry not yet returned."""

    entries: list[E]
    # Every entry still unread started at or before this (µs since the epoch); None: none left.
    older_bound_us: int | None


def micros(moment: datetime | None) -> int:
    return round(moment.timestamp() * 1_000_000) if moment is not None else 0


def name_token(name: str) -> str:
    """Workflow names are validated tokens; anything else is hashed into one."""
    if subjects.is_valid_token(name) and not name.startswith("~"):
        return name
    return "~" + hashlib.sha256(name.encode()).hexdigest()[:32]


def entry_subject(generation: int, status: str, name: str) -> str:
    return f"wfidx.g{generation}.{status}.{name_token(name)}"


def entry_filter(generation: int, *, status: str | None, name: str | None) -> str:
    return f"wfidx.g{generation}.{status or '*'}.{name_token(name) if name else '*'}"


def marks_subject(generation: int) -> str:
    """One token shorter than an entry's subject: no listing filter matches it."""
    return f"wfidx.g{generation}.bounds"


def generation_filter(generation: int) -> str:
    """Every entry and mark of the generation."""
    return f"wfidx.g{generation}.>"


def decode_entry(stored: Stored) -> IndexEntry | None:
    try:
        doc = orjson.loads(stored.data)
        return IndexEntry(
            seq=stored.seq,
            workflow_id=str(doc["wf"]),
            name=str(doc["name"]),
            status=str(doc["status"]),
            started_us=int(doc["started"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        _log.warning("skipping a malformed index entry", subject=stored.subject, seq=stored.seq)
        return None


def decode_mark(stored: Stored) -> BoundMark | None:
    try:
        doc = orjson.loads(stored.data)
        return BoundMark(seq=stored.seq, through=int(doc["through"]), bound_us=int(doc["bound"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        _log.warning("skipping a malformed bound mark", subject=stored.subject, seq=stored.seq)
        return None


class Reads(Protocol):
    """The two direct gets the scan and the marks need (``projections._nats.Direct``)."""

    async def last(self, subject: str) -> Stored | None: ...

    async def next(
        self, filter_subject: str, *, from_seq: int, limit: int
    ) -> tuple[list[Stored], int]: ...


async def next_mark(direct: Reads, generation: int) -> dict[str, int] | None:
    """A mark over every entry stored now, from the newest mark and the entries after it; None
    when no entry came after it."""
    return await next_bound(
        direct, marks=marks_subject(generation), covering=generation_filter(generation)
    )


def _started_of_entry(stored: Stored) -> int | None:
    entry = decode_entry(stored)
    return entry.started_us if entry is not None else None


async def next_bound(
    direct: Reads,
    *,
    marks: str,
    covering: str,
    started_of: Callable[[Stored], int | None] = _started_of_entry,
) -> dict[str, int] | None:
    """A mark (``{through, bound}``, published on ``marks``) over every entry stored now, from
    the newest mark and the entries on the filter ``covering`` after it (``started_of`` reads
    an entry's start, None: not an entry); None when none came after it. ``covering`` may
    leave entries out only if each of them is stored after an entry it matches that started
    at the same moment (``projections.keys``: a workflow's start-hour entry comes first)."""
    last = await direct.last(marks)
    newest = decode_mark(last) if last is not None else None
    through, bound = (newest.through, newest.bound_us) if newest is not None else (0, 0)
    covered, cursor = through, through + 1
    while True:
        batch, pending = await direct.next(covering, from_seq=cursor, limit=_PAGE)
        for stored in batch:
            started = started_of(stored) if stored.subject != marks else None
            if started is not None:
                covered, bound = stored.seq, max(bound, started)
        if not batch or pending == 0:
            break
        cursor = batch[-1].seq + 1
    return {"through": covered, "bound": bound} if covered > through else None


class BoundMarker:
    """Marks bounds over the entries one writer adds (``next_bound``, reading ``covering``).
    Marks only make listings faster: a failure costs speed, never correctness."""

    def __init__(
        self,
        direct: Reads,
        publisher: Publisher,
        *,
        marks: str,
        covering: str,
        started_of: Callable[[Stored], int | None] = _started_of_entry,
    ) -> None:
        self._direct, self._publisher = direct, publisher
        self._marks, self._covering, self._started_of = marks, covering, started_of
        self._added = 0  # entries added since this writer's last mark

    def added(self, count: int = 1) -> None:
        self._added += count

    async def mark(self) -> None:
        """Mark a bound over every entry stored so far, if this writer added any since its
        last mark (another writer's entries are marked by that writer, or by the next mark
        anyone writes)."""
        added = self._added
        if not added:
            return
        doc = await next_bound(
            self._direct, marks=self._marks, covering=self._covering,
            started_of=self._started_of,
        )  # fmt: skip
        if doc is not None:
            reply = await self._publisher.call(self._marks, doc, f"marking {self._marks}")
            if "error" in reply:
                raise StoreError(f"marking {self._marks} failed: {describe(reply)}")
        self._added -= added


class IndexWriter:
    """Publishes and deletes one generation's entries, and marks bounds over them. Any number of
    writers may share a generation: nothing here depends on what one of them remembers."""

    def __init__(self, direct: Direct, publisher: Publisher, *, generation: int) -> None:
        self._direct = direct
        self._publisher = publisher
        self._generation = generation
        self._marker = BoundMarker(
            direct,
            publisher,
            marks=marks_subject(generation),
            covering=generation_filter(generation),
        )

    async def add(self, view: WorkflowView, *, replacing: int = 0) -> int:
        """Publish the entry for the view's status; returns its stream sequence.

        ``replacing``: the sequence of the entry it supersedes (0: the workflow's first). The msg
        id names the status and that entry, so it is the same for every attempt of one change (a
        retry after a lost ack or a crash finds the entry already published instead of adding
        another) and differs when a workflow enters a status again (paused and resumed, retried):
        the same id would be de-duplicated to the entry deleted since.
        """
        wf, status = view.workflow_id, view.status
        doc = {"wf": wf, "name": view.name, "status": status, "started": micros(view.started_at)}
        self._marker.added()
        answer = await self._publisher.send(
            entry_subject(self._generation, status, view.name),
            orjson.dumps(doc),
            {"Nats-Msg-Id": f"g{self._generation}:{wf}:{status}:{replacing}"},
        )
        reply = await self._publisher.wait(answer, f"indexing workflow {wf}")
        if "error" in reply:
            raise StoreError(f"indexing workflow {wf} failed: {describe(reply)}", retryable=True)
        return int(reply["seq"])

    async def remove(self, seq: int) -> None:
        """Delete an entry (idempotent). ``no_erase``: overwriting the bytes is 8x slower."""
        reply = await self._publisher.call(
            f"$JS.API.STREAM.MSG.DELETE.{subjects.INDEX_STREAM}",
            {"seq": seq, "no_erase": True},
            f"deleting index entry {seq}",
        )
        if "error" in reply and error_code(reply) not in _ALREADY_GONE:
            raise StoreError(f"deleting index entry {seq} failed: {describe(reply)}")

    async def mark(self) -> None:
        """Mark a bound over every entry stored so far (``BoundMarker``); the projector calls
        it after each batch."""
        await self._marker.mark()


Accept = Callable[[list[IndexEntry]], Awaitable[list[tuple[IndexEntry, T]]]]


async def newest(
    direct: Reads,
    generation: int,
    *,
    status: str | None,
    name: str | None,
    limit: int,
    accept: Accept[T],
    first_window: int = 256,
    since_us: int = 0,
) -> list[T]:
    """The ``limit`` newest accepted entries of the status and name (None: any), newest first.

    ``accept`` turns entries into rows, dropping those that are not current (one call per
    window). Newest means greatest ``started_at``, then greatest workflow id. ``since_us``:
    no entry started before it is wanted, so the scan ends once the marks bound the rest below.
    """
    chosen: dict[str, tuple[IndexEntry, T]] = {}
    windows: AsyncIterator[Window[IndexEntry]] = newest_first(
        direct,
        entry_filter(generation, status=status, name=name),
        marks=marks_subject(generation),
        first_window=first_window,
        decode=decode_entry,
    )
    async for window in windows:
        fresh = [entry for entry in window.entries if entry.workflow_id not in chosen]
        for entry, row in await accept(fresh) if fresh else []:
            chosen.setdefault(entry.workflow_id, (entry, row))
        bound = window.older_bound_us
        if bound is None or bound < since_us:
            break  # nothing unread, or nothing unread started late enough
        if sum(e.started_us > bound for e, _ in chosen.values()) >= limit:
            break
    ranked = sorted(
        chosen.values(), key=lambda pair: (pair[0].started_us, pair[0].workflow_id), reverse=True
    )
    return [row for _, row in ranked[:limit]]


async def newest_first(
    direct: Reads,
    filter_subject: str,
    *,
    marks: str,
    first_window: int = 256,
    decode: Callable[[Stored], E | None] = decode_entry,  # type: ignore[assignment]
) -> AsyncIterator[Window[E]]:
    """Windows of entries on ``filter_subject``, from the end of the stream backwards, each
    with the bound the marks on ``marks`` give for the entries before it. ``first_window``
    counts stream positions (entries of other subjects included)."""
    last = await direct.last(filter_subject)
    if last is None:
        return
    hi = last.seq  # the window ends here
    seen = 0  # matches after ``hi``, all returned already
    size = first_window
    while True:
        lo = max(1, hi - size + 1)
        (probe, pending), bound = await asyncio.gather(
            direct.next(filter_subject, from_seq=lo, limit=1), _bound_before(direct, marks, lo)
        )
        if not probe:
            return  # everything was deleted meanwhile
        first = probe[0]
        total = 1 + pending  # matches at lo or after
        found = await _window(direct, filter_subject, first, hi, expected=total - seen)
        seen = total
        entries = [entry for entry in map(decode, found) if entry is not None]
        if lo == 1:
            yield Window(entries, None)
            return
        yield Window(entries, bound)
        hi = lo - 1
        if len(entries) < first_window:
            size *= 4


async def _bound_before(direct: Reads, marks: str, lo: int) -> int:
    """A bound on the start of every entry before ``lo``: the tightest of the first marks at
    or after ``lo`` whose ``through`` reaches it (a mark is stored after what it covers)."""
    if lo <= 1:
        return 0
    found, _ = await direct.next(marks, from_seq=lo, limit=_MARKS_READ)
    bounds = [
        mark.bound_us
        for mark in map(decode_mark, found)
        if mark is not None and mark.through >= lo - 1
    ]
    return min(bounds, default=_UNKNOWN_BOUND)


async def _window(
    direct: Reads, filter_subject: str, first: Stored, hi: int, *, expected: int
) -> list[Stored]:
    """The entries from ``first`` up to ``hi``. ``expected`` is a hint: entries come and go."""
    if first.seq > hi:
        return []
    messages = [first]
    cursor = first.seq + 1
    while cursor <= hi:
        wanted = min(_PAGE, max(16, expected - len(messages) + 16))
        batch, pending = await direct.next(filter_subject, from_seq=cursor, limit=wanted)
        messages += [message for message in batch if message.seq <= hi]
        if not batch or pending == 0 or batch[-1].seq >= hi:
            break
        cursor = batch[-1].seq + 1
    return messages
