"""Secondary index entries: what ``jetwork list --parent/--input/--label/--until`` reads instead
of scanning the whole index.

The status index (``projections.index``) orders a workflow by its last status change, so a
filter that few workflows match, or a start window far in the past, reads back through every
workflow. A workflow's parent, inputs, labels and start never change, so its first view in a
generation also gets one small message per thing a filter may ask about, each ``{"wf",
"started"}``, on a subject of its own in stream ``JW_KEYS`` (apart from ``JW_INDEX``, whose
status scans would otherwise step over them):

- ``wfkey.g<n>.p.<parent id>``: a sub-workflow of that parent;
- ``wfkey.g<n>.i.<hash>``: input ``KEY`` with text ``VALUE`` (``search.input_text``), the
  hash being the first 32 hex of SHA-256 over ``KEY``, a NUL and ``VALUE``;
- ``wfkey.g<n>.l.<label>``: a label some job needs (hashed like a name when not a token);
- ``wfkey.g<n>.t0.<hour>``, ``wfkey.g<n>.t1.<hour>.<minute>`` and
  ``wfkey.g<n>.t2.<minute>.<second>``: started in that hour, minute and second (each numbered
  from the epoch, under the bucket above it).

Entries are written in groups (``projections.grouping``): the first views a writer stores at
about the same moment (every view a batch writes at once) share one message per subject,
``{"wfs": [[wf, started], ...]}`` of at most 256 workflows, instead of a message per workflow
and subject (an S1 workflow's three start buckets were three of its projector's eight
messages). A message of one ``{"wf", "started"}``, as written before, reads the same. The
view keeps the sequences of its groups (header ``Jw-Keys``); deleting a workflow deletes a
group once every other workflow in it is deleted too (``ViewStore.remove``), so a group never
loses a live member's entry; a rebuild writes its generation's; purging a generation removes
them with the rest. A listing counts messages: a subject's "entries" below are its messages.
They are hints like status entries: a row is listed only from the workflow's stored summary,
which every condition is checked on again, so a leftover of a crashed write is never shown.

A listing counts the entries of each subject its filter names (one direct get each) and, when
the smallest holds at most ``AT_ONCE``, reads just those, newest first. Without a status or an
``until``, a bigger one is walked backwards from its newest entry (``newest``) until the bound
marks on ``wfkey.g<n>.bounds`` (written after each projector batch, as for the status index)
prove that nothing unread started later than the rows found; a walk that finds matches rare
gives up at ``WALK_BUDGET`` entries. A bigger one is read whole only when
the recent lists cannot answer (the matches are not among the newest) and it holds at most
``AT_MOST`` and, with a status, no more than the status's index entries. A window of start
times reads the hours it spans, newest first (one ``STREAM.INFO`` lists the hours that have
any), a big hour by its minutes and a big minute by its seconds (listed the same way), until
``limit`` rows are found: a bucket holds only workflows started before every bucket read so
far, so the first ``limit`` rows in that order are the newest.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import structlog

from events import subjects
from events.errors import StoreError
from projections import bounds
from projections._nats import Direct, Publisher, Stored, describe, error_code
from projections.grouping import Grouped, chunks, group_id, publish_groups
from projections.index import micros, name_token
from projections.search import ListFilter, input_text
from projections.views import WorkflowView

_log = structlog.get_logger("jetwork.projections")
# Deleting a message that is not there (any more) is done already (``projections.index``).
ALREADY_GONE = frozenset({10057, 10043})
T = TypeVar("T")

_LEVELS = (3600, 60, 1)  # seconds a start bucket spans: hours, minutes, seconds
# Entries of one subject worth reading whole before anything else (a few requests: every entry
# is a message of its own), and at most (when the recent lists cannot answer).
AT_ONCE = 512
AT_MOST = 20_000
# Entries a backward walk (``newest``) hands over for their summaries before it gives up.
WALK_BUDGET = 512
# Its first window spans this many times the stream positions that hold ``limit`` entries of
# its subject, were they spread evenly: most walks end in one window.
_SPREAD = 2
_SMALL_BUCKET = 256  # a start bucket with more entries is read by the buckets below it
_CHUNK = 256  # summaries read per request
HEADER = "Jw-Keys"


@dataclass(frozen=True, slots=True)
class KeyEntry:
    seq: int
    workflow_id: str
    started_us: int


def _hashed(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parent_subject(generation: int, parent: str) -> str:
    return f"wfkey.g{generation}.p.{name_token(parent)}"


def input_subject(generation: int, key: str, text: str) -> str:
    return f"wfkey.g{generation}.i.{_hashed(key + chr(0) + text)}"


def label_subject(generation: int, label: str) -> str:
    return f"wfkey.g{generation}.l.{name_token(label)}"


def time_subjects(generation: int, started_us: int) -> list[str]:
    """The start's hour, minute and second (numbered from the epoch), each under the one
    above it, so that the buckets of one are listed by one filter."""
    hour, minute, second = (started_us // (size * 1_000_000) for size in _LEVELS)
    return [
        f"wfkey.g{generation}.t0.{hour}",
        f"wfkey.g{generation}.t1.{hour}.{minute}",
        f"wfkey.g{generation}.t2.{minute}.{second}",
    ]


def time_filter(generation: int, level: int, parent: int | None) -> str:
    """Every bucket of ``level`` (under bucket ``parent`` of the level above)."""
    return f"wfkey.g{generation}.t{level}." + ("*" if parent is None else f"{parent}.*")


def key_subjects(generation: int, view: WorkflowView) -> list[str]:
    """Every secondary subject ``view`` is listed under (sorted, no repeats)."""
    found = {input_subject(generation, k, input_text(v)) for k, v in view.inputs.items()}
    found |= {label_subject(generation, label) for label in view.labels}
    if view.parent is not None:
        found.add(parent_subject(generation, view.parent.workflow_id))
    if view.started_at is not None:
        found.update(time_subjects(generation, micros(view.started_at)))
    return sorted(found)


def marks_subject(generation: int) -> str:
    """Bound marks over the generation's entries (``projections.bounds``): one token shorter
    than every entry's subject, so no listing filter matches it."""
    return f"wfkey.g{generation}.bounds"


def marker(direct: Direct, publisher: Publisher, generation: int) -> bounds.BoundMarker:
    """Marks bounds over the entries of ``generation``: ``newest`` stops reading on them.
    It reads back only the start-hour entries (one per workflow, of eight with three inputs
    and a label): every other entry of a workflow is stored after its hour's (``add``)."""
    return bounds.BoundMarker(
        direct,
        publisher,
        marks=marks_subject(generation),
        covering=time_filter(generation, 0, None),
        started_of=_started_of,
    )


def _started_of(stored: Stored) -> int | None:
    """The latest start in a group: it bounds every workflow the group lists."""
    return max((entry.started_us for entry in decode(stored)), default=None)


def group_body(members: Sequence[tuple[str, int]]) -> bytes:
    """A group's message: its workflows and their starts (µs), ``[[wf, started], ...]``."""
    return orjson.dumps({"wfs": members})


def decode(stored: Stored) -> list[KeyEntry]:
    """The entries one message holds: a group's, or the one of a message written before groups
    (``{"wf", "started"}``); none of a malformed one."""
    try:
        doc = orjson.loads(stored.data)
        if "wfs" in doc:
            return [KeyEntry(stored.seq, str(wf), int(started)) for wf, started in doc["wfs"]]
        return [KeyEntry(stored.seq, str(doc["wf"]), int(doc["started"]))]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        _log.warning("skipping a malformed key entry", subject=stored.subject, seq=stored.seq)
        return []


def _decode_all(found: Iterable[Stored]) -> Iterable[KeyEntry]:
    return (entry for stored in found for entry in decode(stored))


def encode_seqs(seqs: Sequence[int]) -> str:
    return ",".join(map(str, seqs))


def decode_seqs(text: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in (text or "").split(",") if part)
    except ValueError:
        return ()


class KeyWriter:
    """Publishes the secondary entries of first views in groups (``projections.grouping``):
    the views added in one turn of the event loop share one message per subject. The groups'
    start-hour messages are stored first, the others (pipelined) once they are: the bound
    marks read only the hour entries (``marker``), which bounds every entry stored after one
    of them."""

    def __init__(self, publisher: Publisher, generation: int) -> None:
        self._publisher = publisher
        self._generation = generation
        self._grouped: Grouped[WorkflowView, tuple[int, ...]] = Grouped(self._publish_groups)

    async def add(self, view: WorkflowView) -> tuple[int, ...]:
        """Publish the view's entries (with those of the views added alongside); the sequences
        of the messages that hold them."""
        return await self.enqueue(view)

    def enqueue(self, view: WorkflowView) -> asyncio.Future[tuple[int, ...]]:
        """``add`` without its coroutine (``Grouped.enqueue``)."""
        return self._grouped.enqueue(view)

    async def _publish_groups(self, views: list[WorkflowView]) -> list[tuple[int, ...]]:
        members: dict[str, dict[str, int]] = {}  # subject -> its workflows and their starts
        for view in views:
            for subject in key_subjects(self._generation, view):
                members.setdefault(subject, {})[view.workflow_id] = micros(view.started_at)
        held: dict[str, list[int]] = {view.workflow_id: [] for view in views}
        hours = time_filter(self._generation, 0, None)[:-1]  # "wfkey.g<n>.t0."
        first = {s: m for s, m in members.items() if s.startswith(hours)}
        await self._publish_subjects(first, held)
        await self._publish_subjects({s: m for s, m in members.items() if s not in first}, held)
        return [tuple(held[view.workflow_id]) for view in views]

    async def _publish_subjects(
        self, members: dict[str, dict[str, int]], held: dict[str, list[int]]
    ) -> None:
        groups = [
            (subject, chunk)
            for subject, starts in members.items()
            for chunk in chunks(sorted(starts.items()))
        ]
        messages = [
            (
                subject,
                group_body(chunk),
                group_id(f"g{self._generation}:{subject}", (wf for wf, _ in chunk)),
                len(chunk),
            )
            for subject, chunk in groups
        ]
        for (_, chunk), seq in zip(
            groups, await publish_groups(self._publisher, messages), strict=True
        ):
            for wf, _ in chunk:
                held[wf].append(seq)


async def remove(publisher: Publisher, seq: int) -> None:
    """Delete an entry group (idempotent; ``no_erase`` as for status entries)."""
    reply = await publisher.call(
        f"$JS.API.STREAM.MSG.DELETE.{subjects.KEYS_STREAM}",
        {"seq": seq, "no_erase": True},
        f"deleting secondary index entry {seq}",
    )
    if "error" in reply and error_code(reply) not in ALREADY_GONE:
        raise StoreError(f"deleting secondary index entry {seq} failed: {describe(reply)}")


def generation_filter(generation: int) -> str:
    return f"wfkey.g{generation}.>"


# --- reading ---------------------------------------------------------------------------------

# Rows for entries (newest first), in their order, dropping those that do not match.
Accept = Callable[[list[KeyEntry]], Awaitable[list[T]]]


def filter_subjects(generation: int, where: ListFilter) -> list[str]:
    """The secondary subjects every match of ``where`` is listed under."""
    found = [input_subject(generation, key, text) for key, text in where.inputs.items()]
    found += [label_subject(generation, label) for label in where.labels]
    if where.parent is not None:
        found.append(parent_subject(generation, where.parent))
    return found


async def fewest(direct: Direct, generation: int, where: ListFilter) -> tuple[int, str] | None:
    """The subject ``where`` names with the fewest entries, and how many (one direct get per
    subject, concurrently); None when it names none."""
    named = filter_subjects(generation, where)
    if not named:
        return None
    counts = await asyncio.gather(*(_count(direct, subject) for subject in named))
    return min(zip(counts, named, strict=True))


async def read(
    direct: Direct, subject: str, where: ListFilter, *, limit: int, accept: Accept[T]
) -> list[T]:
    """The ``limit`` newest matches among the entries of ``subject`` (read whole)."""
    return await _take(_usable(_decode_all(await direct.all(subject)), where), accept, limit)


async def newest(
    direct: bounds.Reads,
    generation: int,
    subject: str,
    where: ListFilter,
    *,
    limit: int,
    accept: Accept[T],
    rank: Callable[[T], tuple[int, str]],
    expected: int,
    budget: int = WALK_BUDGET,
    min_window: int = 256,
) -> list[T] | None:
    """The ``limit`` newest matches among the entries of ``subject``, read backwards in
    windows of stream positions (``projections.bounds.newest_first``) and, within a window,
    newest first: it stops once ``limit`` rows started after everything still unread (the
    bound marks bound the windows not read yet), so it reads about as many summaries as rows
    wanted when most entries match. None when more than ``budget`` entries were handed to
    ``accept`` without an answer (the matches are rare among them: a recent list or the start
    buckets answer for less). ``rank``: a row's start (µs) and workflow id, its place newest
    first as every listing orders rows. ``expected``: entries the subject holds, to size the
    first window."""
    last = await direct.last(subject)
    if last is None:
        return []
    first_window = max(min_window, last.seq * max(limit, 32) * _SPREAD // max(expected, 1))
    windows: AsyncIterator[bounds.Window[KeyEntry]] = bounds.newest_first(
        direct, subject, marks=marks_subject(generation), first_window=first_window, decode=decode
    )
    rows: list[T] = []
    seen: set[str] = set()
    taken = 0
    async for window in windows:
        fresh = [e for e in _usable(window.entries, where) if e.workflow_id not in seen]
        seen.update(e.workflow_id for e in fresh)
        bound = -1 if window.older_bound_us is None else window.older_bound_us
        at = 0
        while at < len(fresh):
            wanted = limit - sum(rank(row)[0] > bound for row in rows)
            chunk = fresh[at : at + min(_CHUNK, max(32, wanted))]
            at += len(chunk)
            taken += len(chunk)
            rows += await accept(chunk)
            # Every entry still unread started at or before ``floor``: the rest of this
            # window (newest first) and every window before it.
            floor = max(bound, fresh[at].started_us if at < len(fresh) else -1)
            if sum(rank(row)[0] > floor for row in rows) >= limit:
                return sorted(rows, key=rank, reverse=True)[:limit]
            if taken > budget:
                return None
        if window.older_bound_us is None or bound < where.since_us:
            break  # nothing unread, or nothing unread started late enough
    return sorted(rows, key=rank, reverse=True)[:limit]


async def _count(direct: Direct, subject: str) -> int:
    found, pending = await direct.next(subject, from_seq=1, limit=1)
    return len(found) + pending


def _usable(found: Iterable[KeyEntry], where: ListFilter) -> list[KeyEntry]:
    """Entries within the start bounds, one per workflow, newest first."""
    entries = {entry.workflow_id: entry for entry in found if where.takes_start(entry.started_us)}
    return sorted(entries.values(), key=lambda e: (e.started_us, e.workflow_id), reverse=True)


async def _take(entries: list[KeyEntry], accept: Accept[T], limit: int) -> list[T]:
    """The first ``limit`` rows of ``entries``: as many summaries read as rows still wanted
    (at least 32, at most 256 a request), since most entries match."""
    rows: list[T] = []
    at = 0
    while at < len(entries) and len(rows) < limit:
        size = min(_CHUNK, max(32, limit - len(rows)))
        rows += await accept(entries[at : at + size])
        at += size
    return rows[:limit]


async def by_time(
    direct: Direct,
    publisher: Publisher,
    generation: int,
    where: ListFilter,
    *,
    limit: int,
    accept: Accept[T],
) -> list[T]:
    """The ``limit`` newest matches of ``where`` (which has an ``until``) by the start buckets:
    the hours with entries (one ``STREAM.INFO``), newest first; a big one by its minutes, a big
    minute by its seconds."""
    walk = _TimeWalk(direct, publisher, generation, where, limit=limit, accept=accept)
    await walk.buckets(0, time_filter(generation, 0, None))
    return walk.rows[:limit]


class _TimeWalk(Generic[T]):
    def __init__(
        self,
        direct: Direct,
        publisher: Publisher,
        generation: int,
        where: ListFilter,
        *,
        limit: int,
        accept: Accept[T],
    ) -> None:
        self._direct, self._publisher, self._generation = direct, publisher, generation
        self._where, self._limit, self._accept = where, limit, accept
        self._until = micros(where.until)
        self._since = micros(where.since) if where.since is not None else None
        self.rows: list[T] = []

    async def buckets(self, level: int, filter_subject: str) -> bool:
        """Read the buckets of ``level`` on ``filter_subject`` that meet the window, newest
        first; True once ``limit`` rows are found (nothing older can displace them)."""
        size = _LEVELS[level] * 1_000_000
        counts = await _subject_counts(self._publisher, filter_subject)
        found = sorted(
            ((int(s.rsplit(".", 1)[1]), s, n) for s, n in counts.items() if _numbered(s)),
            reverse=True,
        )
        for number, subject, count in found:
            if number * size > self._until:
                continue
            if self._since is not None and (number + 1) * size <= self._since:
                break
            if count <= _SMALL_BUCKET or level == len(_LEVELS) - 1:
                if await self._read(subject):
                    return True
            elif await self.buckets(level + 1, time_filter(self._generation, level + 1, number)):
                return True
        return False

    async def _read(self, subject: str) -> bool:
        entries = _usable(_decode_all(await self._direct.all(subject)), self._where)
        self.rows += await _take(entries, self._accept, self._limit - len(self.rows))
        return len(self.rows) >= self._limit


def _numbered(subject: str) -> bool:
    return subject.rsplit(".", 1)[1].isdigit()


async def _subject_counts(publisher: Publisher, filter_subject: str) -> dict[str, int]:
    """The subjects of ``JW_KEYS`` matching the filter and their message counts (paged)."""
    counts: dict[str, int] = {}
    while True:
        request: dict[str, Any] = {"subjects_filter": filter_subject, "offset": len(counts)}
        reply = await publisher.call(
            f"$JS.API.STREAM.INFO.{subjects.KEYS_STREAM}", request, "reading the index"
        )
        if "error" in reply:
            raise StoreError(f"reading the index failed: {describe(reply)}", retryable=True)
        page = reply.get("state", {}).get("subjects") or {}
        counts.update({str(k): int(v) for k, v in page.items()})
        total = int(reply.get("total", 0) or 0)
        if not page or len(counts) >= total:
            return counts
