"""The query side of the projections: what the client and the CLI call.

Every call reads the current generation first (one direct get), so readers move to a rebuilt
set of views the moment it is switched in. Reads are direct gets: no consumer is created per
query.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events import namespaces, subjects
from events.catalog import WorkflowStatus
from events.dispatch import InvalidDispatch, LabelSet, capabilities, serves
from events.errors import StoreError
from projections import index, keys, recent
from projections._nats import Direct, Publisher
from projections.generations import Generations
from projections.positions import LagProbe
from projections.search import ListFilter, from_recent
from projections.store import ViewStore
from projections.views import WorkflowSummary, WorkflowView
from projections.waiting import UnservedLabelSet

_log = structlog.get_logger("jetwork.projections")
_STATUSES = frozenset(status.value for status in WorkflowStatus)


class RunningJobInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    workflow_id: str
    job: str
    attempt: int = 0
    epoch: int = 0


class WorkerInfo(BaseModel):
    """A live worker, from its entry in KV ``jw_workers`` (refreshed on every heartbeat).

    ``stale``: its last refresh is older than the reader's ``stale_after`` (3 heartbeats by
    default); the entry itself disappears when the bucket's TTL runs out.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    worker_id: str
    labels: tuple[str, ...] = ()
    handlers: tuple[str, ...] = ()
    concurrency: int = 0
    started_at: datetime | None = None
    last_seen: datetime | None = None
    running: tuple[RunningJobInfo, ...] = ()
    host: str = ""
    pid: int = 0
    paused: tuple[str, ...] = ()  # "worker" and/or "@<handler>": no new claims there
    # Handler -> {"input": JSON Schema | null, "output": … | null, "takes_inputs": bool}.
    handler_schemas: dict[str, dict[str, Any]] = Field(default_factory=dict)
    namespace: str = "default"  # the one whose jobs it claims (events/namespaces.py)
    stale: bool = False


def _key_rows(
    store: ViewStore,
    *,
    status: str | None,
    name: str | None,
    where: ListFilter,
    shown: str | None,
) -> keys.Accept[WorkflowSummary]:
    """The rows of secondary entries: their stored summaries, where they match everything.
    ``shown``: the namespace whose rows are kept (None: every namespace's)."""

    async def accept(entries: builtins.list[keys.KeyEntry]) -> builtins.list[WorkflowSummary]:
        stored = await store.summaries(
            [entry.workflow_id for entry in entries], keep=where.precheck(status)
        )
        rows = []
        for entry in entries:
            found = stored.get(entry.workflow_id)
            if found is None:
                continue  # deleted, a leftover of a crashed write, or cannot match
            row = found.summary
            if status is not None and row.status != status:
                continue
            if name is not None and row.name != name:
                continue
            if shown is not None and row.namespace != shown:
                continue  # another namespace's (the entries are not per namespace)
            if where.takes_start(index.micros(row.started_at)) and where.takes_row(row):
                rows.append(row)
        return rows

    return accept


def _rank(row: WorkflowSummary) -> tuple[int, str]:
    """A row's place in a listing, newest first: its start, then its id (as the index's)."""
    return index.micros(row.started_at), row.workflow_id


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Views:
    """Read the projections: one workflow's view, listings, live workers, projector lag."""

    def __init__(
        self,
        nc: NATS,
        *,
        stale_after: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
        recent_lists: bool = True,
        secondary: bool = True,
    ) -> None:
        self._nc = nc
        self._use_recent = recent_lists  # False: always scan the index (for comparisons)
        self._use_keys = secondary  # False: never read the secondary entries (the same)
        self._stale_after = timedelta(seconds=stale_after)
        self._timeout = timeout
        self._clock = clock
        self._publisher = Publisher(nc, timeout=timeout)
        self._generations = Generations(nc, publisher=self._publisher, timeout=timeout)
        self._index = Direct(nc, subjects.INDEX_STREAM, timeout=timeout)
        self._keys = Direct(nc, subjects.KEYS_STREAM, timeout=timeout)
        self._workers = Direct(nc, f"KV_{subjects.KV_WORKERS}", timeout=timeout)
        self._labelsets = Direct(nc, f"KV_{subjects.KV_LABELSETS}", timeout=timeout)
        self._lag_probe = LagProbe(nc, timeout=timeout)
        self._stores: dict[int, ViewStore] = {}

    async def generation(self) -> int:
        """The generation readers are on (it changes when a rebuild is switched in)."""
        return (await self._generations.current()).generation

    async def get(self, workflow_id: str) -> WorkflowView | None:
        """The workflow's view as projected so far; None when the projector has not seen it."""
        if not subjects.is_valid_token(workflow_id):
            return None
        return await (await self._store()).view(workflow_id)

    async def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 50,
        where: ListFilter | None = None,
        namespace: str | None = None,
        every_namespace: bool = False,
    ) -> builtins.list[WorkflowSummary]:
        """Summaries newest first (by ``started_at``), optionally of one status and/or name,
        and matching ``where`` (``projections.search``), of one namespace (None: the default
        one; ``events.namespaces``), or of all with ``every_namespace`` (the retention's sweep:
        then the index is read, the recent lists being each namespace's own)."""
        namespace = None if namespace == namespaces.DEFAULT else namespace
        shown = None if every_namespace else namespaces.shown(namespace)
        if status is not None and status not in _STATUSES:
            raise ValueError(f"unknown status {status!r} (one of: {', '.join(sorted(_STATUSES))})")
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        pointer = await self._generations.current()
        store = await self._store(pointer.generation)
        where = where or ListFilter()
        keyed = self._use_keys and pointer.keyed and where.active
        fewest = await keys.fewest(self._keys, store.generation, where) if keyed else None
        rows_of = _key_rows(store, status=status, name=name, where=where, shown=shown)
        if fewest is not None and fewest[0] <= keys.AT_ONCE:
            return await keys.read(self._keys, fewest[1], where, limit=limit, accept=rows_of)
        if fewest is not None and status is None and where.until is None and namespace is None:
            # Many entries: their newest ones, read backwards until the marks prove the rest
            # older (about ``limit`` summaries when most match; None: they did not). Entries
            # are not per namespace: another namespace's listing has a recent list of its own.
            walked = await keys.newest(
                self._keys,
                store.generation,
                fewest[1],
                where,
                limit=limit,
                accept=rows_of,
                rank=_rank,
                expected=fewest[0],
            )
            if walked is not None:
                return walked
        recent_list = None
        use_recent = self._use_recent and not every_namespace
        if use_recent and not where.active:
            recent_list = recent.list_id(status=status, name=name, namespace=namespace)
        elif use_recent and status is None:  # filters: the newest of every status first
            every = recent.list_id(status=None, name=name, namespace=namespace)
            assert every is not None  # (every status: an insert-only list)
            newest = await store.recent(every)
            if newest is None:
                return []  # no workflow ever joined this list
            found = await from_recent(store, newest, where, name=name, limit=limit)
            if found is not None:
                return found
        elif use_recent and (
            ended := recent.list_id(status=status, name=name, namespace=namespace)
        ):
            # An ended status with filters: its own list, the newest that ever ended so.
            newest = await store.recent(ended)
            if newest is None:
                return []  # no workflow ever joined this list
            found = await from_recent(store, newest, where, name=name, limit=limit, status=status)
            if found is not None:
                return found
        if recent_list is not None:
            newest = await store.recent(recent_list)
            if newest is None:
                return []  # no workflow ever joined this list
            if limit <= len(newest.entries) or not newest.truncated:
                taken = newest.entries[:limit]
                rows = await self._rows(store, taken, name)
                kept = [row for row in rows if status is None or row.status == status]
                if len(kept) == len(taken):
                    return kept
                # A member left the status (an operator's retry) or was deleted: the list no
                # longer holds the newest ``limit`` of it, the index does.

        # The matches are not among the newest: secondary entries, if few enough to read
        # whole (with a status: no more than its index entries), or the start window's.
        if fewest is not None and await self._worth_reading(fewest[0], store, status, name):
            return await keys.read(self._keys, fewest[1], where, limit=limit, accept=rows_of)
        if keyed and status is None and where.until is not None:
            generation = store.generation
            return await keys.by_time(
                self._keys, self._publisher, generation, where, limit=limit, accept=rows_of
            )

        async def accept(
            entries: builtins.list[index.IndexEntry],
        ) -> builtins.list[tuple[index.IndexEntry, WorkflowSummary]]:
            entries = [entry for entry in entries if where.takes_entry(entry)]
            # (The status is the entry's: a summary changing status right now is checked on
            # its index entry, so only the filter is checked before the summary is built.)
            stored = await store.summaries(
                [entry.workflow_id for entry in entries], keep=where.precheck()
            )
            rows = []
            for entry in entries:
                found = stored.get(entry.workflow_id)
                # An entry counts only if the workflow's summary points at it: leftovers of a
                # crashed write, or an entry being superseded right now, are not shown.
                if found is None or found.index_seq != entry.seq:
                    continue
                if name is not None and found.summary.name != name:
                    continue  # a hashed name token shared by two names
                if shown is not None and found.summary.namespace != shown:
                    continue  # another namespace's
                if not where.takes_row(found.summary):
                    continue
                rows.append((entry, found.summary))
            return rows

        return await index.newest(
            self._index,
            store.generation,
            status=status,
            name=name,
            limit=limit,
            accept=accept,
            first_window=max(256, limit),
            since_us=where.since_us,
        )

    async def _worth_reading(
        self, entries: int, store: ViewStore, status: str | None, name: str | None
    ) -> bool:
        if entries > keys.AT_MOST:
            return False
        return status is None or entries <= await self._count(store.generation, status, name)

    async def _count(self, generation: int, status: str, name: str | None) -> int:
        """The workflows in ``status`` (of ``name``): its index entries."""
        subject = index.entry_filter(generation, status=status, name=name)
        found, pending = await self._index.next(subject, from_seq=1, limit=1)
        return len(found) + pending

    async def _rows(
        self, store: ViewStore, entries: builtins.list[tuple[int, str]], name: str | None
    ) -> builtins.list[WorkflowSummary]:
        stored = await store.summaries([wf for _, wf in entries])
        rows = [stored[wf].summary for _, wf in entries if wf in stored]
        return [row for row in rows if name is None or row.name == name]

    async def workers(self) -> builtins.list[WorkerInfo]:
        """Workers whose entry has not expired, by id; ``stale`` marks missed heartbeats."""
        now = self._clock()
        found: builtins.list[WorkerInfo] = []
        for stored in await self._workers.all(f"$KV.{subjects.KV_WORKERS}.>"):
            if stored.is_tombstone:
                continue
            try:
                info = WorkerInfo.model_validate_json(stored.data)
            except ValidationError:
                _log.warning("skipping a malformed worker entry", subject=stored.subject)
                continue
            stale = info.last_seen is None or now - info.last_seen > self._stale_after
            found.append(info.model_copy(update={"stale": stale}))
        return sorted(found, key=lambda info: info.worker_id)

    async def unserved(
        self, workers: builtins.list[WorkerInfo] | None = None
    ) -> builtins.list[UnservedLabelSet]:
        """Label sets in use with dispatches waiting and no live worker serving them.

        ``workers``: the live workers if just read (else they are read here).
        """
        live = [
            capabilities(w.labels, w.handlers, w.namespace)
            for w in (workers if workers is not None else await self.workers())
            if not w.stale
        ]
        unserved = [
            labelset
            for labelset in await self.labelsets()
            if not any(serves(caps, frozenset(labelset.requirements)) for caps in live)
        ]
        # A label set's priority levels (``events.priority``) are one set to its workers.
        waiting: dict[str, int] = {}
        sets: dict[str, LabelSet] = {}
        for ls in unserved:
            waiting[ls.token] = waiting.get(ls.token, 0) + await self._waiting(ls)
            sets.setdefault(ls.token, ls)
        found = [
            UnservedLabelSet.of(ls.requirements, token=token, waiting=waiting[token])
            for token, ls in sets.items()
        ]
        return sorted((ls for ls in found if ls.waiting), key=lambda ls: ls.token)

    async def labelsets(self) -> builtins.list[LabelSet]:
        """Every label set jobs have been queued for (``jw_labelsets``)."""
        found: builtins.list[LabelSet] = []
        for stored in await self._labelsets.all(f"$KV.{subjects.KV_LABELSETS}.>"):
            if stored.is_tombstone:
                continue
            try:
                found.append(LabelSet.decode(stored.data))
            except InvalidDispatch:
                _log.warning("skipping a malformed label set entry", subject=stored.subject)
        return found

    async def _waiting(self, labelset: LabelSet) -> int:
        """Queued jobs of a label set no worker has acknowledged: what its consumer holds, or,
        when no worker ever created it, every ``JobQueued`` of the set."""
        js = self._nc.jetstream()
        try:
            try:
                info = await js.consumer_info(subjects.EVENTS_STREAM, labelset.consumer)
                return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
            except NotFoundError:
                stream = await js.stream_info(
                    subjects.EVENTS_STREAM, subjects_filter=labelset.subject
                )
                return len(stream.state.subjects or {})
        except Exception as exc:
            raise StoreError(f"reading the queued jobs failed: {exc!r}", retryable=True) from None

    async def lag(self) -> int:
        """Events not projected yet: after the current generation's stored positions."""
        try:
            return await self._lag_probe.lag(await self.generation())
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"reading the projector's lag failed: {exc!r}", retryable=True
            ) from None

    async def wait_caught_up(self, *, timeout: float = 10.0, interval: float = 0.05) -> None:
        """Return once every event appended so far is projected; ``StoreError`` on timeout."""
        deadline = time.monotonic() + timeout
        while await self.lag():
            if time.monotonic() >= deadline:
                raise StoreError(f"the projector did not catch up within {timeout:g}s")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Drop every reply subscription this reader made (it works again if used later)."""
        for store in self._stores.values():
            await store.close()
        self._stores = {}
        await self._generations.close()
        await self._lag_probe.close()
        for inbox in (self._index, self._keys, self._workers, self._labelsets, self._publisher):
            await inbox.close()

    async def _store(self, generation: int | None = None) -> ViewStore:
        if generation is None:
            generation = await self.generation()
        store = self._stores.get(generation)
        if store is None:
            for old in self._stores.values():  # a rebuild switched generations
                await old.close()
            self._stores = {
                generation: ViewStore(
                    self._nc,
                    generation=generation,
                    publisher=self._publisher,
                    timeout=self._timeout,
                )
            }
            store = self._stores[generation]
        return store
