"""What every part of the client shares: its connection, its event store and reader, and the
lookups its commands, reads and streams are built on (is a workflow known, its state, the live
workers, a tail of the log)."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncGenerator
from typing import cast

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from actors import workflow
from actors.workflow import WorkflowState
from events import namespaces, subjects
from events.base import RecordedEvent
from events.catalog import WorkflowDeleted, WorkflowStarted
from events.errors import UndecodableEvent, WorkflowNotFound
from events.store import ActorRef, EventStore
from projections.reader import Views, WorkerInfo
from projections.views import WorkflowView
from projections.waiting import live_capabilities, with_live_workers
from sdk.client.translate import require_id, translated
from sdk.errors import WorkflowNotStarted


class ClientBase:
    """The connection a ``Client`` works on, and the lookups shared by its commands and reads."""

    def __init__(
        self,
        nc: NATS,
        *,
        url: str | None = None,
        owns_connection: bool = False,
        namespace: str | None = None,
    ) -> None:
        self._nc = nc
        # The namespace this client works in: given, else --namespace / JETWORK_NAMESPACE, else
        # "default". ``_ns`` is what its events record (None for the default namespace).
        self._namespace = (
            namespaces.require(namespace) if namespace else namespaces.process_namespace()
        )
        self._ns = namespaces.stored(self._namespace)
        # Whether the namespace refuses starts over its quota, and when that was read
        # (``ClientCommands.start``; forgotten when this client changes a quota).
        self._refusing: tuple[float, bool] | None = None
        self._url = url or _connected_url(nc)
        self._owns_connection = owns_connection
        self._store = EventStore(nc)
        # One reader for the client's life: each ``Views`` subscribes reply inboxes that stay
        # until the connection closes, so a ``Views`` per call would leak subscriptions.
        self._views: Views | None = None

    @property
    def url(self) -> str:
        """The NATS server this client talks to."""
        return self._url

    @property
    def namespace(self) -> str:
        """The namespace this client starts, lists and addresses workflows in."""
        return self._namespace

    @property
    def nc(self) -> NATS:
        """The underlying NATS connection (for advanced use)."""
        return self._nc

    async def close(self) -> None:
        """Close the connection if this client opened it.

        On a connection the caller owns, the client only drops the reply subscriptions it made.
        """
        views, self._views = self._views, None
        if views is not None and not self._nc.is_closed:
            await views.close()
        if self._owns_connection and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()

    # --- internals -------------------------------------------------------------------------------

    def _reader(self) -> Views:
        if self._views is None:
            self._views = Views(self._nc)
        return self._views

    async def _state(self, workflow_id: str) -> WorkflowState:
        require_id(workflow_id)
        with translated(f"reading workflow {workflow_id}", url=self._url):
            loaded = await self._store.read_tolerant(subjects.workflow_events(workflow_id))
        state = workflow.replay(loaded.events, WorkflowState(workflow_id=workflow_id))
        if state.status is None:
            await self._raise_not_found(workflow_id)
        if state.namespace != self._ns:
            raise WorkflowNotFound(workflow_id)  # another namespace's: not there for this one
        return state

    async def _live_workers(self) -> builtins.list[WorkerInfo]:
        """The live workers of the client's namespace (the only ones its jobs can get)."""
        with translated("listing workers", url=self._url):
            found = await self._reader().workers()
        return [w for w in found if w.namespace == self._namespace]

    async def _with_live_workers(self, view: WorkflowView) -> WorkflowView:
        """``view`` with each queued job's ``waiting_for.live_workers`` counted."""
        if not any(job.waiting_for is not None for job in view.jobs.values()):
            return view
        return with_live_workers(view, live_capabilities(await self._live_workers()))

    async def _require_known(self, workflow_id: str) -> None:
        """Return if the workflow has started or its start request waits; else not found."""
        require_id(workflow_id)
        # The pending request first: the engine acks it only after WorkflowStarted is stored.
        if await self._start_pending(workflow_id):
            return
        with translated(f"reading workflow {workflow_id}", url=self._url):
            try:
                last = await self._store.last_event(ActorRef.workflow(workflow_id))
            except UndecodableEvent:
                return  # garbage on its subject: something was appended, so it exists
        if last is None or isinstance(last.event, WorkflowDeleted):  # deleted: a tombstone only
            raise WorkflowNotFound(workflow_id)
        await self._require_namespace(workflow_id)

    async def require_in_namespace(self, workflow_id: str) -> None:
        """``WorkflowNotFound`` if the workflow started in another namespace (one not started yet
        passes: a subscription may come before the start)."""
        await self._require_namespace(workflow_id)

    async def _require_namespace(self, workflow_id: str) -> None:
        """``WorkflowNotFound`` when the workflow started in another namespace than the
        client's (one direct get: its ``WorkflowStarted`` is the only event on its subject)."""
        subject = subjects.workflow_event(workflow_id, "WorkflowStarted")
        with translated(f"reading workflow {workflow_id}", url=self._url):
            try:
                found = await self._store.read(subject)
            except UndecodableEvent:
                return
        started = found[0].event if found else None
        if isinstance(started, WorkflowStarted) and started.namespace != self._ns:
            raise WorkflowNotFound(workflow_id)

    async def _start_pending(self, workflow_id: str) -> bool:
        """True when a start request of this workflow in the client's namespace waits."""
        js = self._nc.jetstream()
        with translated(f"looking for the start of {workflow_id}", url=self._url):
            try:
                pending = await js.get_last_msg(
                    subjects.COMMANDS_STREAM, subjects.command("start", workflow_id)
                )
            except NotFoundError:
                return False
        try:
            named = orjson.loads(pending.data or b"{}").get("namespace")
        except (orjson.JSONDecodeError, AttributeError):
            return True  # garbage: the engine will say
        return (None if named == namespaces.DEFAULT else named) == self._ns

    async def _raise_not_found(self, workflow_id: str) -> None:
        if await self._start_pending(workflow_id):
            raise WorkflowNotStarted(workflow_id)
        raise WorkflowNotFound(workflow_id)

    async def _tail(
        self, filter_subject: str, *, from_start: bool, from_seq: int | None = None
    ) -> AsyncGenerator[RecordedEvent, None]:
        start = from_seq if from_seq is not None else (1 if from_start else None)
        with translated(f"following {filter_subject}", url=self._url):
            tail = cast(
                AsyncGenerator[RecordedEvent, None],
                self._store.subscribe(filter_subject, from_seq=start),
            )
            async with contextlib.aclosing(tail) as events:
                async for recorded in events:
                    yield recorded


def _connected_url(nc: NATS) -> str:
    server = getattr(nc, "connected_url", None)
    return server.geturl() if server is not None else "the NATS server"
