"""Views in KV ``jw_workflows``: written newest-wins by stream sequence, read by key.

Keys of generation ``n`` (``projections.generations``):

- ``g<n>.v.<wf>``: the ``WorkflowView`` JSON, exactly the documented format. A view bigger than
  one message (``max_payload``) is cut into chunks ``g<n>.c.<wf>.<seq>.<i>`` and the view key
  holds none of the body, only the ``Jw-Chunks`` header.
- ``g<n>.s.<wf>``: the ``WorkflowSummary`` JSON (what ``list`` returns: no jobs, small).
- ``g<n>.r.<list>``: the newest workflows of a listing (``projections.recent``).

Bookkeeping rides in headers, so it is read without parsing a view: ``Jw-Seq`` (the stream
sequence of the last event the view reflects), ``Jw-Index-Seq`` (the workflow's entry in the
listing index), ``Jw-Stale-Index`` (an entry being retired) and ``Jw-Status``.

Every write is a compare-and-set on the key's revision. A writer that loses the race reads the
stored ``Jw-Seq``: when it is not older than its own, the stored view stands (a redelivered or
late event never moves a view backwards); otherwise it writes again on top of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import structlog
from nats.aio.client import Client as NATS

from events import subjects
from events.errors import StoreError
from projections import keys
from projections._nats import Direct, Publisher, Stored, describe, error_code
from projections.index import IndexWriter
from projections.recent import Recent, recent_key
from projections.recent import decode as decode_recent
from projections.views import WorkflowSummary, WorkflowView, summary

_log = structlog.get_logger("jetwork.projector")

T = TypeVar("T")
KV_STREAM = f"KV_{subjects.KV_WORKFLOWS}"
KV_PREFIX = f"$KV.{subjects.KV_WORKFLOWS}."
_CONFLICT_CODES = frozenset({10071, 10164})
_SEQ = "Jw-Seq"
_INDEX = "Jw-Index-Seq"
_STALE = "Jw-Stale-Index"
_STATUS = "Jw-Status"
_CHUNKS = "Jw-Chunks"
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
        self._max_value = max_value or int(nc.max_payload) - _HEADROOM

    async def close(self) -> None:
        """Drop the reply subscriptions of its requests (the publisher's only if it made it)."""
        await self._kv.close()
        await self._index_reads.close()
        if self._own_publisher:
            await self._publisher.close()

    # --- reading ------------------------------------------------------------------------------

    async def written(self, wf: str) -> Written:
        """What is stored for ``wf``; finishes retiring an index entry a crash left behind."""
        view, stored_summary = await asyncio.gather(
            self._kv.last(KV_PREFIX + view_key(self.generation, wf)),
            self._kv.last(KV_PREFIX + summary_key(self.generation, wf)),
        )
        if view is None or view.is_tombstone:
            return Written()
        stale = _int(view, _STALE)
        if stale:
            await self._index.remove(stale)
        chunks = _int(view, _CHUNKS)
        return Written(
            seq=_int(view, _SEQ),
            view_rev=view.seq,
            summary_rev=stored_summary.seq if stored_summary is not None else 0,
            index_seq=_int(view, _INDEX),
            status=view.headers.get(_STATUS),
            chunk_seq=_int(view, _SEQ) if chunks else 0,
            key_seqs=keys.decode_seqs(view.headers.get(keys.HEADER)),
        )

    async def view(self, wf: str) -> WorkflowView | None:
        for _ in range(_READ_ATTEMPTS):
            stored = await self._kv.last(KV_PREFIX + view_key(self.generation, wf))
            if stored is None or stored.is_tombstone:
                return None
            chunks = _int(stored, _CHUNKS)
            if not chunks:
                return WorkflowView.model_validate_json(stored.data)
            body = await self._read_chunks(wf, _int(stored, _SEQ), chunks)
            if body is not None:
                return WorkflowView.model_validate_json(body)
            # Rewritten while we read it (its chunks were replaced): read the new one.
        raise StoreError(f"the view of {wf} keeps changing while being read", retryable=True)

    async def summaries(self, wfs: Sequence[str]) -> dict[str, StoredSummary]:
        keys = {KV_PREFIX + summary_key(self.generation, wf): wf for wf in wfs}
        found = await self._kv.last_of_each(list(keys))
        result: dict[str, StoredSummary] = {}
        for subject, stored in found.items():
            if stored.is_tombstone or subject not in keys:
                continue
            result[keys[subject]] = StoredSummary(
                summary=WorkflowSummary.model_validate_json(stored.data),
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
        added: tuple[int, ...] = ()  # secondary entries this call published
        for _ in range(_ATTEMPTS):
            index_seq, stale = prev.index_seq, 0
            adding = not prev.view_rev and not added
            if prev.status != view.status or adding:
                # A first view also gets its secondary entries: what it is listed under never
                # changes afterwards (``projections.keys``), so later writes only carry them on.
                index_seq, added = await asyncio.gather(
                    self._index.add(view, replacing=prev.index_seq)
                    if prev.status != view.status
                    else _same(index_seq),
                    keys.add(self._publisher, self.generation, view) if adding else _same(added),
                )
                stale = prev.index_seq if prev.index_seq != index_seq else 0
            key_seqs = prev.key_seqs or added
            headers = {_SEQ: str(seq), _INDEX: str(index_seq), _STATUS: view.status}
            if key_seqs:
                headers[keys.HEADER] = keys.encode_seqs(key_seqs)
            if stale:
                headers[_STALE] = str(stale)
            body = WorkflowView.__pydantic_serializer__.to_json(view)
            chunk_seq = 0
            if len(body) > self._max_value:
                chunk_seq = seq
                headers[_CHUNKS] = str(await self._write_chunks(wf, seq, body))
                body = b""
            key = view_key(self.generation, wf)
            # The summary is newest-wins on its own: it goes along with the view, not after it.
            view_rev, summary_rev = await asyncio.gather(
                self._compare_and_set(key, body, headers, prev.view_rev),
                self._write_summary(view, seq, index_seq, prev.summary_rev),
            )
            if view_rev is None:
                current = await self.written(wf)
                if current.seq >= seq:  # a newer view is stored: ours is obsolete
                    await self._discard(wf, index_seq, chunk_seq, current)
                    await self._drop_keys(added, current.key_seqs)
                    return current
                prev = current  # an older one was written since we looked: write over it
                continue
            if stale:
                await self._index.remove(stale)
            await self._drop_keys(added, key_seqs)
            if prev.chunk_seq and prev.chunk_seq != chunk_seq:
                await self._purge_chunks(wf, prev.chunk_seq)
            return Written(seq, view_rev, summary_rev, index_seq, view.status, chunk_seq, key_seqs)
        raise StoreError(f"writing the view of {wf} kept conflicting", retryable=True)

    async def _drop_keys(self, added: tuple[int, ...], kept: tuple[int, ...]) -> None:
        """Delete the secondary entries this write published that the stored view does not
        name (another writer's view came first with its own)."""
        for seq in sorted(set(added) - set(kept)):
            await keys.remove(self._publisher, seq)

    async def remove(self, wf: str, prev: Written) -> Written:
        """Remove everything stored of a deleted workflow: its index and secondary entries first
        (an entry without a summary is never shown), then its summary, chunks and view.
        Idempotent.

        KV delete markers, not purges: the projector's role may write keys but not purge
        streams (``events.roles``); readers take a marker for "no such key"."""
        if prev.index_seq:
            await self._index.remove(prev.index_seq)
        stored = await self._kv.last(KV_PREFIX + view_key(self.generation, wf))
        key_seqs = set(prev.key_seqs)
        if stored is not None and not stored.is_tombstone:
            key_seqs |= set(keys.decode_seqs(stored.headers.get(keys.HEADER)))
        for seq in sorted(key_seqs):
            await keys.remove(self._publisher, seq)
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
        return Written()

    async def mark_index(self) -> None:
        """Bound the index entries stored so far (``projections.index``): call after a batch."""
        await self._index.mark()

    async def _write_summary(self, view: WorkflowView, seq: int, index_seq: int, rev: int) -> int:
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
                return rev
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

    async def _discard(self, wf: str, index_seq: int, chunk_seq: int, current: Written) -> None:
        """Remove what a write that lost to a newer view had already put in place."""
        if index_seq and index_seq != current.index_seq:
            await self._index.remove(index_seq)
        if chunk_seq and chunk_seq != current.chunk_seq:
            await self._purge_chunks(wf, chunk_seq)

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


async def _same(value: T) -> T:
    return value


def _int(stored: Stored, header: str) -> int:
    try:
        return int(stored.headers.get(header, "0") or 0)
    except ValueError:
        return 0
