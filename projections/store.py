"""Views in KV ``jw_workflows``: written newest-wins by stream sequence, read by key.

Keys of generation ``n`` (``projections.generations``):

- ``g<n>.v.<wf>``: the ``WorkflowView`` JSON, exactly the documented format. A view bigger than
  one message (``max_payload``) is cut into chunks ``g<n>.c.<wf>.<seq>.<i>`` and the view key
  holds none of the body, only the ``Jw-Chunks`` header.
- ``g<n>.s.<wf>``: the ``WorkflowSummary`` JSON (what ``list`` returns: no jobs, small), or,
  for a view of at most ``INLINE_VIEW`` bytes (header ``Jw-Body: view``), the whole
  ``WorkflowView``: one compare-and-set per write instead of two (view and summary), and the
  reader derives the summary from it. Such a workflow's view key holds nothing newer.
- ``g<n>.r.<list>``: the newest workflows of a listing (``projections.recent``).

Bookkeeping rides in headers, so it is read without parsing a view: ``Jw-Seq`` (the stream
sequence of the last event the view reflects), ``Jw-Index-Seq`` (the workflow's entry in the
listing index), ``Jw-Stale-Index`` (an entry being retired), ``Jw-Status`` and ``Jw-Keys`` (its
secondary entries, ``projections.keys``).

Readers take whichever of the two keys holds the newest view (``Jw-Seq``): a workflow whose view
grew past ``INLINE_VIEW`` moves to the view key, and an older value left in the other key is
never shown.

Every write is a compare-and-set on the key's revision. A writer that loses the race reads the
stored ``Jw-Seq``: when it is not older than its own, the stored view stands (a redelivered or
late event never moves a view backwards); otherwise it writes again on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import orjson
import structlog
from nats.aio.client import Client as NATS

from events import subjects
from events.errors import StoreError
from projections import index, keys
from projections._nats import Direct, Publisher, Stored, describe, error_code
from projections.index import IndexWriter
from projections.recent import Recent, recent_key
from projections.recent import decode as decode_recent
from projections.views import WorkflowSummary, WorkflowView, summary

_log = structlog.get_logger("jetwork.projector")

A = TypeVar("A")
B = TypeVar("B")
KV_STREAM = f"KV_{subjects.KV_WORKFLOWS}"
KV_PREFIX = f"$KV.{subjects.KV_WORKFLOWS}."
_CONFLICT_CODES = frozenset({10071, 10164})
_SEQ = "Jw-Seq"
_INDEX = "Jw-Index-Seq"
_STALE = "Jw-Stale-Index"
_STATUS = "Jw-Status"
_CHUNKS = "Jw-Chunks"
_BODY = "Jw-Body"  # "view": the summary key holds the whole view
_INLINE = "view"
# Views up to this size ride in the summary key (one write); bigger ones keep a key of their own
# so that a listing, which reads summaries, does not read them whole.
INLINE_VIEW = 8192
_HEADROOM = 4096  # subject and headers travel with the value
_ATTEMPTS = 20
_READ_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Written:
    """What the store holds for one workflow (all zero when nothing)."""

    seq: int = 0
    view_rev: int = 0
    summary_rev: int = 0
    index_seq: int = 0
    status: str | None = None
    chunk_seq: int = 0  # the sequence naming the view's chunks; 0: not chunked
    key_seqs: tuple[int, ...] = ()  # its secondary index entries (``projections.keys``)


@dataclass(frozen=True, slots=True)
class StoredSummary:
    summary: WorkflowSummary
    seq: int
    index_seq: int


def view_key(generation: int, wf: str) -> str:
    return f"g{generation}.v.{wf}"


def summary_key(generation: int, wf: str) -> str:
    return f"g{generation}.s.{wf}"


def _chunk_key(generation: int, wf: str, seq: int, part: int) -> str:
    return f"g{generation}.c.{wf}.{seq}.{part}"


class ViewStore:
    """Reads and writes the views of one generation."""

    def __init__(
        self,
        nc: NATS,
        *,
        generation: int,
        publisher: Publisher | None = None,
        timeout: float = 5.0,
        max_value: int | None = None,
    ) -> None:
        self.generation = generation
        self._kv = Direct(nc, KV_STREAM, timeout=timeout)
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(nc, timeout=timeout)
        self._index_reads = Direct(nc, subjects.INDEX_STREAM, timeout=timeout)
        self._index = IndexWriter(self._index_reads, self._publisher, generation=generation)
        self._keys_reads = Direct(nc, subjects.KEYS_STREAM, timeout=timeout)
        self._keys_marker = keys.marker(self._keys_reads, self._publisher, generation)
        self._keys = keys.KeyWriter(self._publisher, generation)
        self._max_value = max_value or int(nc.max_payload) - _HEADROOM
        self._inline = min(INLINE_VIEW, self._max_value)

    async def close(self) -> None:
        """Drop the reply subscriptions of its requests (the publisher's only if it made it)."""
        await self._kv.close()
        await self._index_reads.close()
        await self._keys_reads.close()
        if self._own_publisher:
            await self._publisher.close()

    # --- reading ------------------------------------------------------------------------------

    async def written(self, wf: str) -> Written:
        """What is stored for ``wf``; finishes retiring an index entry a crash left behind."""
        view_subject = KV_PREFIX + view_key(self.generation, wf)
        summary_subject = KV_PREFIX + summary_key(self.generation, wf)
        found = await self._kv.last_of_each([view_subject, summary_subject])
        view, stored_summary = found.get(view_subject), found.get(summary_subject)
        # A key's revision counts even when it holds a delete marker: the next compare-and-set
        # of that key expects it.
        view_rev = view.seq if view is not None else 0
        summary_rev = stored_summary.seq if stored_summary is not None else 0
        chunked = view if view is not None and _int(view, _CHUNKS) else None
        newest = newest_view(view, stored_summary)
        if newest is None:
            return Written(view_rev=view_rev, summary_rev=summary_rev)
        stale = _int(newest, _STALE)
        if stale:
            await self._release_index(wf, stale)
        return Written(
            seq=_int(newest, _SEQ),
            view_rev=view_rev,
            summary_rev=summary_rev,
            index_seq=_int(newest, _INDEX),
            status=newest.headers.get(_STATUS),
            chunk_seq=_int(chunked, _SEQ) if chunked is not None else 0,
            key_seqs=keys.decode_seqs(newest.headers.get(keys.HEADER)),
        )

    async def view(self, wf: str) -> WorkflowView | None:
        view_subject = KV_PREFIX + view_key(self.generation, wf)
        summary_subject = KV_PREFIX + summary_key(self.generation, wf)
        for _ in range(_READ_ATTEMPTS):
            found = await self._kv.last_of_each([view_subject, summary_subject])
            stored = newest_view(found.get(view_subject), found.get(summary_subject))
            if stored is None:
                return None
            chunks = _int(stored, _CHUNKS)
            if not chunks:
                return WorkflowView.model_validate_json(stored.data)
            body = await self._read_chunks(wf, _int(stored, _SEQ), chunks)
            if body is not None:
                return WorkflowView.model_validate_json(body)
            # Rewritten while we read it (its chunks were replaced): read the new one.
        raise StoreError(f"the view of {wf} keeps changing while being read", retryable=True)

    async def summaries(
        self, wfs: Sequence[str], *, keep: Callable[[Any], bool] | None = None
    ) -> dict[str, StoredSummary]:
        """The stored summaries of ``wfs`` (those that have one). ``keep``: a cheap check on
        the stored document decoded by orjson (``ListFilter.may_take``); those it refuses are
        left out before the summary is built."""
        keys = {KV_PREFIX + summary_key(self.generation, wf): wf for wf in wfs}
        found = await self._kv.last_of_each(list(keys))
        result: dict[str, StoredSummary] = {}
        for subject, stored in found.items():
            if stored.is_tombstone or subject not in keys:
                continue
            if keep is not None and not keep(_loaded(stored.data)):
                continue
            result[keys[subject]] = StoredSummary(
                summary=summary_of(stored),
                seq=_int(stored, _SEQ),
                index_seq=_int(stored, _INDEX),
            )
        return result

    async def recent(self, list_name: str) -> Recent | None:
        stored = await self._kv.last(KV_PREFIX + recent_key(self.generation, list_name))
        if stored is None or stored.is_tombstone:
            return None
        return decode_recent(stored.data)

    async def _read_chunks(self, wf: str, seq: int, count: int) -> bytes | None:
        names = [KV_PREFIX + _chunk_key(self.generation, wf, seq, i) for i in range(count)]
        found = await self._kv.last_of_each(names)
        if len(found) != count:
            return None
        return b"".join(found[name].data for name in names)

    # --- writing ------------------------------------------------------------------------------

    async def write(self, view: WorkflowView, seq: int, prev: Written) -> Written:
        """Store ``view`` (reflecting the log up to ``seq``) unless a newer one is stored.

        ``prev`` is what the caller believes is stored; a wrong belief costs a retry, never a
        wrong view. Returns what is stored afterwards.
        """
        wf = view.workflow_id
        body = WorkflowView.__pydantic_serializer__.to_json(view)
        inline = len(body) <= self._inline
        added: tuple[int, ...] = ()  # secondary entries this call published
        for _ in range(_ATTEMPTS):
            index_seq, stale = prev.index_seq, 0
            adding = not prev.seq and not added  # nothing stored: its first view
            if prev.status != view.status or adding:
                # A first view also gets its secondary entries: what it is listed under never
                # changes afterwards (``projections.keys``), so later writes only carry them on.
                # Both groups' futures at once, no task each (a view written per workflow).
                entry = (
                    self._index.enqueue(view, replacing=prev.index_seq)
                    if prev.status != view.status
                    else None
                )
                entries = self._keys.enqueue(view) if adding else None
                index_seq, added = await _both(entry, index_seq, entries, added)
                stale = prev.index_seq if prev.index_seq != index_seq else 0
                if adding:
                    self._keys_marker.added(len(added))
            key_seqs = prev.key_seqs or added
            headers = {_SEQ: str(seq), _INDEX: str(index_seq), _STATUS: view.status}
            if key_seqs:
                headers[keys.HEADER] = keys.encode_seqs(key_seqs)
            if stale:
                headers[_STALE] = str(stale)
            fresh = index_seq if index_seq != prev.index_seq else 0  # our new entry, if any
            try:
                if inline:
                    written = await self._write_inline(view, body, seq, headers, prev)
                else:
                    written = await self._write_apart(view, body, seq, headers, prev)
            except Exception:
                if fresh:  # the view will not name it: its group need not wait for us
                    with contextlib.suppress(Exception):
                        await self._abandon(wf, fresh)
                raise
            if written is None:
                current = await self.written(wf)
                if fresh and fresh != current.index_seq:
                    await self._abandon(wf, fresh)
                if current.seq >= seq:  # a newer view is stored: ours is obsolete
                    chunked = not inline and len(body) > self._max_value
                    if chunked and seq != current.chunk_seq:  # ours, not the stored view's
                        await self._purge_chunks(wf, seq)
                    # Another writer's view came first, with its own secondary entries; ours
                    # stay (shared with other workflows: a listing reads a workflow once).
                    return current
                prev = current  # an older one was written since we looked: write over it
                continue
            if stale:
                await self._release_index(wf, stale)
            if prev.chunk_seq and prev.chunk_seq != written.chunk_seq:
                await self._purge_chunks(wf, prev.chunk_seq)
            return replace(written, key_seqs=key_seqs)
        raise StoreError(f"writing the view of {wf} kept conflicting", retryable=True)

    async def _write_inline(
        self, view: WorkflowView, body: bytes, seq: int, headers: dict[str, str], prev: Written
    ) -> Written | None:
        """A small view: one compare-and-set of the summary key, which holds the whole view
        (None: the key changed since ``prev``)."""
        key = summary_key(self.generation, view.workflow_id)
        rev = await self._compare_and_set(key, body, {**headers, _BODY: _INLINE}, prev.summary_rev)
        if rev is None:
            return None
        index_seq = int(headers[_INDEX])
        return Written(seq, prev.view_rev, rev, index_seq, view.status, 0)

    async def _write_apart(
        self, view: WorkflowView, body: bytes, seq: int, headers: dict[str, str], prev: Written
    ) -> Written | None:
        """A big view: its own key (in chunks beyond a message), the summary beside it (None:
        the view key changed since ``prev``, or a newer small view is stored)."""
        wf = view.workflow_id
        index_seq = int(headers[_INDEX])
        chunk_seq = 0
        if len(body) > self._max_value:
            chunk_seq = seq
            headers = {**headers, _CHUNKS: str(await self._write_chunks(wf, seq, body))}
            body = b""
        key = view_key(self.generation, wf)
        # The summary is newest-wins on its own: it goes along with the view, not after it.
        view_rev, summary_rev = await asyncio.gather(
            self._compare_and_set(key, body, headers, prev.view_rev),
            self._write_summary(view, seq, index_seq, prev.summary_rev),
        )
        if view_rev is None or summary_rev is None:
            return None
        return Written(seq, view_rev, summary_rev, index_seq, view.status, chunk_seq)

    async def remove(self, wf: str, prev: Written) -> Written:
        """Remove everything stored of a deleted workflow: its summary, chunks and view, then
        its index and secondary entries (an entry without a summary is never shown; a group's
        last member, deleted alongside, sees the others' delete markers only once its own is
        written). Idempotent.

        KV delete markers, not purges: the projector's role may write keys but not purge
        streams (``events.roles``); readers take a marker for "no such key"."""
        view_subject = KV_PREFIX + view_key(self.generation, wf)
        summary_subject = KV_PREFIX + summary_key(self.generation, wf)
        found = await self._kv.last_of_each([view_subject, summary_subject])
        stored = found.get(view_subject)
        key_seqs = set(prev.key_seqs)
        for either in found.values():  # a small view's are in its summary key's headers
            if not either.is_tombstone:
                key_seqs |= set(keys.decode_seqs(either.headers.get(keys.HEADER)))
        names = [summary_key(self.generation, wf)]
        if stored is not None and _int(stored, _CHUNKS):
            seq = _int(stored, _SEQ)
            names += [_chunk_key(self.generation, wf, seq, i) for i in range(_int(stored, _CHUNKS))]
        names.append(view_key(self.generation, wf))  # last: it is what says the workflow is there
        for key in names:
            marker = await self._publisher.send(KV_PREFIX + key, b"", {"KV-Operation": "DEL"})
            reply = await self._publisher.wait(marker, f"removing {key}")
            if "error" in reply:
                raise StoreError(f"removing {key} failed: {describe(reply)}", retryable=True)
        if prev.index_seq:
            await self._release_index(wf, prev.index_seq)
        await self._release_keys(wf, key_seqs)
        return Written()

    async def _release_index(self, wf: str, seq: int) -> None:
        """``wf`` is no longer listed by index entry ``seq``: delete it once no workflow is. An
        open group this writer follows is settled in memory; any other entry is read, with the
        summaries of the workflows it lists (an open group is followed from then on)."""
        if await self._left_followed_group(wf, seq):
            return
        stored = await self._index_reads.get(seq)
        if stored is None:
            return  # deleted already
        entries = index.decode_entries(stored)
        others = {entry.workflow_id for entry in entries} - {wf}
        summaries = await self._summaries_of(others)
        listed = {
            other
            for other, summary in summaries.items()
            if not summary.is_tombstone and _int(summary, _INDEX) == seq
        }
        if not listed:
            await self._index.remove(seq)
        elif entries[0].status not in index.ENDED:
            self._index.learned(seq, listed)

    async def _abandon(self, wf: str, seq: int) -> None:
        """Our new index entry ``seq`` will not be named by ``wf``'s view (the write failed or
        lost). Others of its group may be being written right now: a group not followed in
        memory goes only if it lists nobody else."""
        if not await self._left_followed_group(wf, seq) and await self._lists_only(seq, wf):
            await self._index.remove(seq)

    async def _left_followed_group(self, wf: str, seq: int) -> bool:
        """If ``seq`` is an open group this writer follows: ``wf`` has left it, and it is
        deleted when nobody is left (True). False: not followed here."""
        if self._index.members(seq) is None:
            return False
        if self._index.left(seq, wf):
            await self._index.remove(seq)
        return True

    async def _release_keys(self, wf: str, seqs: set[int]) -> None:
        """Delete the secondary entry groups of a deleted workflow that list no other workflow
        still stored. A member whose summary is not a delete marker (still there, or not
        written yet: its group may be newer than its first view) keeps the group."""
        for seq in sorted(seqs):
            stored = await self._keys_reads.get(seq)
            if stored is None:
                continue  # deleted already
            others = {entry.workflow_id for entry in keys.decode(stored)} - {wf}
            summaries = await self._summaries_of(others)
            if len(summaries) == len(others) and all(s.is_tombstone for s in summaries.values()):
                await keys.remove(self._publisher, seq)

    async def _lists_only(self, seq: int, wf: str) -> bool:
        """Whether the index message ``seq`` lists no workflow but ``wf`` (or is gone)."""
        stored = await self._index_reads.get(seq)
        return stored is None or {e.workflow_id for e in index.decode_entries(stored)} <= {wf}

    async def _summaries_of(self, wfs: set[str]) -> dict[str, Stored]:
        """The stored summary key of each workflow that has one, by workflow id."""
        names = {KV_PREFIX + summary_key(self.generation, wf): wf for wf in wfs}
        found = await self._kv.last_of_each(list(names)) if names else {}
        return {names[subject]: stored for subject, stored in found.items()}

    async def mark_index(self) -> None:
        """Bound the index and secondary entries stored so far (``projections.index``,
        ``projections.keys``): call after a batch."""
        await asyncio.gather(self._index.mark(), self._keys_marker.mark())

    async def _write_summary(
        self, view: WorkflowView, seq: int, index_seq: int, rev: int
    ) -> int | None:
        """Newest-wins; the summary key's revision, or None when it holds a newer small view."""
        body = WorkflowSummary.__pydantic_serializer__.to_json(summary(view))
        headers = {_SEQ: str(seq), _INDEX: str(index_seq)}
        key = summary_key(self.generation, view.workflow_id)
        for _ in range(_ATTEMPTS):
            written = await self._compare_and_set(key, body, headers, rev)
            if written is not None:
                return written
            stored = await self._kv.last(KV_PREFIX + key)
            rev = stored.seq if stored is not None else 0
            if stored is not None and _int(stored, _SEQ) >= seq:
                # A newer summary, or a newer small view (which never touches the view key):
                # this write is obsolete even if its view key's compare-and-set went through.
                return rev if stored.headers.get(_BODY) != _INLINE else None
        raise StoreError(f"writing the summary of {view.workflow_id} kept conflicting")

    async def _compare_and_set(
        self, key: str, body: bytes, headers: dict[str, str], rev: int
    ) -> int | None:
        """The new revision, or None when ``rev`` is not the key's current revision."""
        headers = {**headers, "Nats-Expected-Last-Subject-Sequence": str(rev)}
        answer = await self._publisher.wait(
            await self._publisher.send(KV_PREFIX + key, body, headers), f"writing {key}"
        )
        if "error" not in answer:
            return int(answer["seq"])
        if error_code(answer) in _CONFLICT_CODES:
            return None
        raise StoreError(f"writing {key} failed: {describe(answer)}", retryable=True)

    async def _write_chunks(self, wf: str, seq: int, body: bytes) -> int:
        size = self._max_value
        parts = [body[i : i + size] for i in range(0, len(body), size)]
        answers = [
            await self._publisher.send(KV_PREFIX + _chunk_key(self.generation, wf, seq, i), part)
            for i, part in enumerate(parts)
        ]
        for answer in answers:
            reply = await self._publisher.wait(answer, f"writing the view of {wf}")
            if "error" in reply:
                raise StoreError(f"writing the view of {wf} failed: {describe(reply)}")
        return len(parts)

    async def _purge_chunks(self, wf: str, seq: int) -> None:
        await self._purge(KV_STREAM, KV_PREFIX + f"g{self.generation}.c.{wf}.{seq}.>")

    async def _purge(self, stream: str, filter_subject: str) -> None:
        await purge(self._publisher, stream, filter_subject)


async def purge(publisher: Publisher, stream: str, filter_subject: str) -> None:
    reply = await publisher.call(
        f"$JS.API.STREAM.PURGE.{stream}", {"filter": filter_subject}, f"purging {stream}"
    )
    if "error" in reply:
        raise StoreError(f"purging {filter_subject} failed: {describe(reply)}")


async def purge_generation(publisher: Publisher, generation: int) -> None:
    """Delete every view, summary, index entry and secondary entry of ``generation``."""
    await purge(publisher, KV_STREAM, KV_PREFIX + f"g{generation}.>")
    await purge(publisher, subjects.INDEX_STREAM, f"wfidx.g{generation}.>")
    await purge(publisher, subjects.KEYS_STREAM, keys.generation_filter(generation))


async def _both(
    first: asyncio.Future[A] | None, otherwise: A, second: asyncio.Future[B] | None, or_else: B
) -> tuple[A, B]:
    """The results of two futures (None: the value beside it), as ``asyncio.gather`` of them
    would give: the first error raised, the other one's retrieved (not reported as lost)."""
    try:
        one = otherwise if first is None else await first
    except BaseException:
        if second is not None:
            second.add_done_callback(_retrieve)
        raise
    return one, or_else if second is None else await second


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def newest_view(view: Stored | None, stored_summary: Stored | None) -> Stored | None:
    """Of a workflow's view key and summary key, the one holding its newest view (None: none)."""
    if view is not None and view.is_tombstone:
        view = None
    inline = stored_summary
    if inline is not None and (inline.is_tombstone or inline.headers.get(_BODY) != _INLINE):
        inline = None
    if view is None or inline is None:
        return view or inline
    return inline if _int(inline, _SEQ) > _int(view, _SEQ) else view


def summary_of(stored: Stored) -> WorkflowSummary:
    """The summary a summary key holds: a summary, or a small view stored whole."""
    if stored.headers.get(_BODY) == _INLINE:
        return summary(WorkflowView.model_validate_json(stored.data))
    return WorkflowSummary.model_validate_json(stored.data)


def _loaded(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None  # the full parse says what is wrong with it


def _int(stored: Stored, header: str) -> int:
    try:
        return int(stored.headers.get(header, "0") or 0)
    except ValueError:
        return 0
