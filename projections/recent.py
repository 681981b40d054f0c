"""Recent lists: the newest workflows of each listing that only ever grows, one KV document each.

A workflow joins ``all`` and ``n.<name>`` when it starts and ``s.<status>`` and
``sn.<status>.<name>`` when it ends; it never leaves them. For such insert-only lists, the
newest ``size`` members by ``started_at`` are kept exactly with one comparison per insertion, so
``list`` reads one document and the summaries it names: a few direct gets, whatever the number of
workflows or how long they ran. A list that ever dropped an entry is marked ``truncated``: deeper
listings go to the index scan (``projections.index``), as do ``running`` and ``paused``, the
listings workflows leave. An operator's retry makes an ended workflow run again: it stays in its
end's list, whose reader drops a member whose summary no longer has that status.

Documents live in ``jw_workflows`` as ``g<n>.r.<list>``. The projector notes every workflow it
touches (noting twice changes nothing) and writes the changed documents by compare-and-set
before it acks the batch, so a crash at any point is repaired when the batch comes back.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from events.catalog import WorkflowStatus
from events.errors import StoreError
from projections._nats import Direct, Publisher, describe, error_code
from projections.index import name_token

DEFAULT_SIZE = 1000
_CONFLICT_CODES = frozenset({10071, 10164})
_ATTEMPTS = 20
# Statuses a workflow leaves: their listings are not insert-only (the index serves them).
_OPEN = frozenset(status.value for status in WorkflowStatus if status.is_open)


def list_id(*, status: str | None, name: str | None, namespace: str | None = None) -> str | None:
    """The recent list serving this filter; None for ``running`` and ``paused`` (not
    insert-only). Outside the default namespace (``None``) the lists are the namespace's own,
    ``x.<namespace>.<list>``: a namespace's workflows join none of another's."""
    if status in _OPEN:
        return None
    if status is None:
        found = "all" if name is None else f"n.{name_token(name)}"
    else:
        found = f"s.{status}" if name is None else f"sn.{status}.{name_token(name)}"
    return found if namespace is None else f"x.{namespace}.{found}"


def lists_of(name: str, status: str, namespace: str | None = None) -> list[str]:
    token = name_token(name)
    lists = ["all", f"n.{token}"]
    if status not in _OPEN:
        lists += [f"s.{status}", f"sn.{status}.{token}"]
    return lists if namespace is None else [f"x.{namespace}.{each}" for each in lists]


def recent_key(generation: int, list_name: str) -> str:
    return f"g{generation}.r.{list_name}"


@dataclass(frozen=True, slots=True)
class Recent:
    """A list's newest members, newest first: (started µs, workflow id)."""

    entries: list[tuple[int, str]]
    truncated: bool  # older members were dropped: the list holds only the newest


def decode(data: bytes) -> Recent:
    doc = orjson.loads(data)
    entries = [(int(started), str(wf)) for started, wf in doc["entries"]]
    return Recent(entries=entries, truncated=bool(doc.get("truncated")))


@dataclass
class _Doc:
    size: int
    revision: int = 0
    keys: list[tuple[int, str]] = field(default_factory=list)  # (started, id), oldest first
    members: set[str] = field(default_factory=set)
    truncated: bool = False
    pending: dict[str, int] = field(default_factory=dict)  # noted since the last write

    def load(self, recent: Recent, revision: int) -> None:
        self.revision = revision
        self.keys = sorted(recent.entries)
        self.members = {wf for _, wf in recent.entries}
        self.truncated = recent.truncated
        for wf, started in self.pending.items():
            self.add(wf, started, remember=False)

    def add(self, wf: str, started: int, *, remember: bool = True) -> None:
        if wf in self.members:
            return
        key = (started, wf)
        if len(self.keys) >= self.size and key < self.keys[0]:
            self.truncated = True
            return  # older than everything kept
        bisect.insort(self.keys, key)
        self.members.add(wf)
        if remember:
            self.pending[wf] = started
        if len(self.keys) > self.size:
            _, dropped = self.keys.pop(0)
            self.members.discard(dropped)
            self.truncated = True

    def encode(self) -> bytes:
        entries = [[started, wf] for started, wf in reversed(self.keys)]
        return orjson.dumps({"entries": entries, "truncated": self.truncated})


class RecentWriter:
    """The projector's side: notes memberships in memory, writes changed documents in bulk."""

    def __init__(
        self,
        kv: Direct,
        publisher: Publisher,
        *,
        prefix: str,
        generation: int,
        size: int = DEFAULT_SIZE,
        cached: int = 2_000,
    ) -> None:
        self._kv = kv
        self._publisher = publisher
        self._prefix = prefix
        self._generation = generation
        self._size = size
        self._cached = cached
        self._docs: OrderedDict[str, _Doc] = OrderedDict()
        self._dirty = False
        self._loading: dict[str, asyncio.Lock] = {}

    async def note(
        self, wf: str, *, name: str, status: str, started_us: int, namespace: str | None = None
    ) -> None:
        for list_name in lists_of(name, status, namespace):
            doc = await self._doc(list_name)
            doc.add(wf, started_us)
            self._dirty = self._dirty or bool(doc.pending)

    @property
    def dirty(self) -> bool:
        """Notes not written yet (asked once per loop of the projector: no scan of the docs)."""
        return self._dirty

    async def flush(self) -> None:
        dirty = [(name, doc) for name, doc in self._docs.items() if doc.pending]
        await asyncio.gather(*(self._write(name, doc) for name, doc in dirty))
        # (Once per flush: a note taken meanwhile, or a write that failed, stays pending.)
        self._dirty = any(doc.pending for doc in self._docs.values())
        while len(self._docs) > self._cached:
            name, doc = next(iter(self._docs.items()))
            if doc.pending:
                break
            del self._docs[name]

    async def _doc(self, list_name: str) -> _Doc:
        doc = self._docs.get(list_name)
        if doc is None:
            lock = self._loading.setdefault(list_name, asyncio.Lock())
            async with lock:
                doc = self._docs.get(list_name)
                if doc is None:
                    doc = _Doc(size=self._size)
                    await self._reload(list_name, doc)
                    self._docs[list_name] = doc
            self._loading.pop(list_name, None)
        self._docs.move_to_end(list_name)
        return doc

    async def _reload(self, list_name: str, doc: _Doc) -> None:
        stored = await self._kv.last(self._subject(list_name))
        if stored is None or stored.is_tombstone:
            doc.load(Recent([], False), 0)
        else:
            doc.load(decode(stored.data), stored.seq)

    async def _write(self, list_name: str, doc: _Doc) -> None:
        for _ in range(_ATTEMPTS):
            written = dict(doc.pending)
            headers = {"Nats-Expected-Last-Subject-Sequence": str(doc.revision)}
            answer = await self._publisher.wait(
                await self._publisher.send(self._subject(list_name), doc.encode(), headers),
                f"writing recent list {list_name}",
            )
            if "error" not in answer:
                doc.revision = int(answer["seq"])
                for wf in written:  # notes that arrived during the write stay pending
                    if doc.pending.get(wf) == written[wf]:
                        del doc.pending[wf]
                return
            if error_code(answer) not in _CONFLICT_CODES:
                raise StoreError(f"writing recent list {list_name} failed: {describe(answer)}")
            await self._reload(list_name, doc)  # another writer: merge with what it wrote
        raise StoreError(f"writing recent list {list_name} kept conflicting", retryable=True)

    def _subject(self, list_name: str) -> str:
        return self._prefix + recent_key(self._generation, list_name)
