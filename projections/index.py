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
  subjects. Entries are written in groups (``projections.grouping``): the workflows whose
  status a batch changes share one message per status and name, deleted by ``ViewStore`` once
  none of them is listed by it any more (open statuses followed in memory, ended ones checked
  on their summaries).
- Bound marks on ``wfidx.g<generation>.bounds`` (``projections.bounds``): ``{through, bound}``
  says that every entry at or before stream sequence ``through`` started at or before
  ``bound``, read from the stream, so true whoever writes entries or marks. A projector marks
  after each batch that added entries.
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
from typing import TypeVar

import orjson
import structlog

from events import subjects
from events.catalog import WorkflowStatus
from events.errors import StoreError
from projections._nats import Direct, Publisher, Stored, describe, error_code
from projections.bounds import BoundMarker, Reads, Window, newest_first, next_bound
from projections.grouping import Grouped, chunks, group_id, publish_groups
from projections.views import WorkflowView

_log = structlog.get_logger("jetwork.projector")
T = TypeVar("T")
# Deleting a message that is not there (any more) is done already: nats-server 2.15 answers
# 10043 ("sequence not found") for one deleted inside the stream, 10057 ("no message found") for
# one below the stream's first sequence.
_ALREADY_GONE = frozenset({10057, 10043})
# Ended statuses: a workflow seldom leaves one (a retry, a deletion), and its group is then
# released once no other workflow of it is listed by it, read from their summaries; the groups
# of open statuses are followed in memory (``IndexWriter.members``).
ENDED = frozenset(status.value for status in WorkflowStatus if status.is_terminal)


@dataclass(frozen=True, slots=True)
class IndexEntry:
    seq: int
    workflow_id: str
    name: str
    status: str
    started_us: int


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


def decode_entries(stored: Stored) -> list[IndexEntry]:
    """The entries a message holds: a group's (workflows that ended together), or the one of a
    single entry; none of a malformed one."""
    try:
        doc = orjson.loads(stored.data)
        name, status = str(doc["name"]), str(doc["status"])
        if "wfs" in doc:
            return [
                IndexEntry(stored.seq, str(wf), name, status, int(started))
                for wf, started in doc["wfs"]
            ]
        return [IndexEntry(stored.seq, str(doc["wf"]), name, status, int(doc["started"]))]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        _log.warning("skipping a malformed index entry", subject=stored.subject, seq=stored.seq)
        return []


async def next_mark(direct: Reads, generation: int) -> dict[str, int] | None:
    """A mark over every entry stored now, from the newest mark and the entries after it; None
    when no entry came after it."""
    return await next_bound(
        direct,
        marks=marks_subject(generation),
        covering=generation_filter(generation),
        started_of=_started_of_entry,
    )


def _started_of_entry(stored: Stored) -> int | None:
    """The latest start in a message: it bounds every workflow the message lists."""
    return max((entry.started_us for entry in decode_entries(stored)), default=None)


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
            started_of=_started_of_entry,
        )
        self._grouped: Grouped[tuple[WorkflowView, int], int] = Grouped(self._publish)
        # Groups of open statuses (running, paused, queued) this writer published or learned,
        # and their workflows still listed by them: a group is deleted when the last leaves.
        self._open: dict[int, set[str]] = {}

    async def add(self, view: WorkflowView, *, replacing: int = 0) -> int:
        """Publish the entry for the view's status, in a group with those of the other
        workflows added alongside (one message per status and name for a batch's changes);
        returns the group's stream sequence.

        ``replacing``: the sequence of the entry it supersedes (0: the workflow's first). The msg
        id names each workflow and that entry, so it is the same for every attempt of one change
        (a retry after a lost ack finds the group already published instead of adding another)
        and differs when a workflow enters a status again (paused and resumed, retried): the
        same id would be de-duplicated to the entry deleted since.
        """
        return await self.enqueue(view, replacing=replacing)

    def enqueue(self, view: WorkflowView, *, replacing: int = 0) -> asyncio.Future[int]:
        """``add`` without its coroutine (``Grouped.enqueue``)."""
        return self._grouped.enqueue((view, replacing))

    def members(self, seq: int) -> set[str] | None:
        """The workflows still listed by open group ``seq``, as far as this writer knows."""
        return self._open.get(seq)

    def learned(self, seq: int, listed: set[str]) -> None:
        """What a read of the summaries found listed by open group ``seq``."""
        if listed:
            self._open[seq] = listed

    def left(self, seq: int, wf: str) -> bool:
        """``wf`` is no longer listed by ``seq``; whether the group is now empty (it was known
        and nobody is left: delete it)."""
        members = self._open.get(seq)
        if members is None:
            return False
        members.discard(wf)
        if members:
            return False
        del self._open[seq]
        return True

    async def _publish(self, items: list[tuple[WorkflowView, int]]) -> list[int]:
        """The entries of ``items`` (views and the entries they replace), grouped by subject;
        each one's group sequence."""
        by_subject: dict[str, dict[str, tuple[WorkflowView, int]]] = {}
        for view, replacing in items:
            subject = entry_subject(self._generation, view.status, view.name)
            by_subject.setdefault(subject, {})[view.workflow_id] = (view, replacing)
        groups = [
            (subject, chunk)
            for subject, members in by_subject.items()
            for chunk in chunks(sorted(members.values(), key=lambda m: m[0].workflow_id))
        ]
        messages = []
        for subject, chunk in groups:
            first = chunk[0][0]
            doc = {
                "name": first.name,
                "status": first.status,
                "wfs": [[view.workflow_id, micros(view.started_at)] for view, _ in chunk],
            }
            ids = (f"{view.workflow_id}:{replacing}" for view, replacing in chunk)
            msg_id = group_id(f"g{self._generation}:{subject}", ids)
            messages.append((subject, orjson.dumps(doc), msg_id, len(chunk)))
            self._marker.added(len(chunk))
        seqs: dict[str, int] = {}
        published = await publish_groups(self._publisher, messages)
        for (_, chunk), seq in zip(groups, published, strict=True):
            seqs.update((view.workflow_id, seq) for view, _ in chunk)
            if chunk[0][0].status not in ENDED:
                self._open.setdefault(seq, set()).update(view.workflow_id for view, _ in chunk)
        return [seqs[view.workflow_id] for view, _ in items]

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
        decode=decode_entries,
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
