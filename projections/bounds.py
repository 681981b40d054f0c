"""Bound marks and backward windows: reading a stream's entries newest first, by start time,
without reading them all (the status index, ``projections.index``; the secondary entries,
``projections.keys``).

- A *bound mark* ``{through, bound}`` says that every entry at or before stream sequence
  ``through`` started at or before ``bound``. It is a fact read from the stream, not a writer's
  memory: its writer takes the newest mark and reads every entry after it up to the end
  (``next_bound``). Entries are never added at or before a sequence that exists already and
  deletions only remove some, so a mark stays true however many writers add entries or marks,
  in whatever order, and however late it is published.
- ``newest_first`` reads a filter backwards in windows of stream positions (direct get goes
  forward from a sequence: a probe of one message gives the number of matches from there on, a
  second request fetches exactly the window's), each with the bound the first marks at or after
  the window's start give for every entry before it. Without such a mark the bound is unknown
  and the reader reads on: slower, never wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import orjson
import structlog

from events.errors import StoreError
from projections._nats import Publisher, Stored, describe

_log = structlog.get_logger("jetwork.projector")
_PAGE = 1000
_UNKNOWN_BOUND = 1 << 62  # no conclusion possible: keep reading
_MARKS_READ = 8  # marks read after a window's start to find one that reaches it


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


async def next_bound(
    direct: Reads,
    *,
    marks: str,
    covering: str,
    started_of: Callable[[Stored], int | None],
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
        started_of: Callable[[Stored], int | None],
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


async def newest_first(
    direct: Reads,
    filter_subject: str,
    *,
    marks: str,
    first_window: int = 256,
    decode: Callable[[Stored], Iterable[E]],
) -> AsyncIterator[Window[E]]:
    """Windows of entries on ``filter_subject``, from the end of the stream backwards, each
    with the bound the marks on ``marks`` give for the entries before it. ``first_window``
    counts stream positions (entries of other subjects included). ``decode``: the entries a
    message holds (a group of secondary entries holds several, ``projections.keys``)."""
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
        entries = [entry for stored in found for entry in decode(stored)]
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
