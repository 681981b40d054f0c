"""The jetwork client: start, watch, query, cancel and audit workflows from Python.

Example::

    async with Client.connect() as client:          # JETWORK_NATS_URL, else nats://127.0.0.1:4222
        handle = await client.start("examples/hello.yaml", inputs={"who": "you"})
        view = await handle.wait(timeout=60)
        print(view.status, view.jobs["greet"].outputs)
        for recorded in await client.history(handle.workflow_id):
            print(recorded.seq, recorded.event.event_type)

Status and history are read from the event log itself (consistent, no projection lag); listings,
workers and lag come from the projections. Every error is a ``JetworkError``: nats-py exceptions
are translated at this boundary.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncGenerator, Generator, Mapping
from types import TracebackType
from typing import Any, cast

import orjson
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from actors import workflow
from actors.workflow import WorkflowState
from events import subjects
from events.base import RecordedEvent
from events.catalog import JOB_EVENTS, WORKFLOW_EVENTS, WorkflowStatus
from events.connection import NatsSettings, connect
from events.dead_letters import DeadLetter, list_dead_letters
from events.errors import JetworkError, ServerUnavailable, WorkflowNotFound
from events.requests import (
    CancelRequest,
    StartRequest,
    new_workflow_id,
    request_msg_id,
    workflow_id_for,
)
from events.store import ActorRef, EventStore
from projections.reader import Views, WorkerInfo
from projections.rebuild import RebuildStats, rebuild
from projections.views import WorkflowSummary, WorkflowView, workflow_view
from projections.waiting import (
    describe_waiting,
    live_capabilities,
    summary_with_live_workers,
    with_live_workers,
)
from sdk.client.definitions import (
    WorkflowSource,
    checked_inputs,
    definition_mapping,
    resolve_definition,
)
from sdk.client.logs import Claim, LogLine, LogReader
from sdk.client.translate import require_id, translated
from sdk.client.workers import LiveWorkers, WorkerList
from sdk.errors import InvalidArgument, JobNotFound, WaitTimeout, WorkflowNotStarted

_WORKFLOW_EVENT_TYPES = frozenset(cls.__name__ for cls in WORKFLOW_EVENTS)
_JOB_EVENT_TYPES = frozenset(cls.__name__ for cls in JOB_EVENTS)
_TERMINAL_TYPES = frozenset({"WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled"})
_PUBLISH_ATTEMPTS = 3


class RunHandle:
    """A started workflow: its id, and shortcuts to wait for it, look at it or cancel it."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self._client = client
        self.workflow_id = workflow_id

    async def wait(self, timeout: float | None = None) -> WorkflowView:
        """The final view once the workflow has ended; ``WaitTimeout`` after ``timeout`` s."""
        return await self._client.wait(self.workflow_id, timeout=timeout)

    async def status(self) -> WorkflowView:
        """The workflow's current view (``WorkflowNotStarted`` until an engine has started it)."""
        return await self._client.status(self.workflow_id)

    async def cancel(self, *, reason: str = "cancelled by user", force: bool = False) -> None:
        """Ask the engine to cancel the workflow (see ``Client.cancel``)."""
        await self._client.cancel(self.workflow_id, reason=reason, force=force)

    def __repr__(self) -> str:
        return f"RunHandle({self.workflow_id!r})"


class Client:
    """An async jetwork client on one NATS connection.

    Use ``async with Client.connect(url) as client`` (or ``client = await Client.connect()`` and
    ``await client.close()``), or wrap a connection you own with ``Client(nc)``.
    """

    def __init__(self, nc: NATS, *, url: str | None = None, owns_connection: bool = False) -> None:
        self._nc = nc
        self._url = url or _connected_url(nc)
        self._owns_connection = owns_connection
        self._store = EventStore(nc)
        # One reader for the client's life: each ``Views`` subscribes reply inboxes that stay
        # until the connection closes, so a ``Views`` per call would leak subscriptions.
        self._views: Views | None = None

    @classmethod
    def connect(cls, url: str | None = None, *, name: str = "jetwork-client") -> _Connecting:
        """Connect to ``url``, else ``JETWORK_NATS_URL``, else ``nats://127.0.0.1:4222``.

        Await it (``client = await Client.connect()``) or use it as an async context manager.
        Raises ``ServerUnavailable`` when the server cannot be reached.
        """
        return _Connecting(NatsSettings.from_env(url=url, name=name))

    @property
    def url(self) -> str:
        """The NATS server this client talks to."""
        return self._url

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

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- commands --------------------------------------------------------------------------------

    async def start(
        self,
        workflow_or_path: WorkflowSource,
        *,
        inputs: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RunHandle:
        """Validate a workflow and its inputs here, then ask the engine to start it.

        ``workflow_or_path`` is a YAML file's path, a ``WorkflowDefinition``, a builder
        ``Workflow`` or a raw mapping. Raises ``InvalidWorkflow`` listing every problem (with
        file and line for files) before anything is sent. With an ``idempotency_key`` the id is
        derived from the key, so starting again with the same key returns the same workflow.
        """
        definition = resolve_definition(workflow_or_path)
        given = dict(inputs or {})
        checked_inputs(definition, given)
        workflow_id = (
            workflow_id_for(idempotency_key) if idempotency_key is not None else new_workflow_id()
        )
        try:
            request = StartRequest(
                workflow_id=workflow_id,
                definition=definition_mapping(definition),
                inputs=given,
                idempotency_key=idempotency_key,
            )
            payload = request.model_dump_json().encode()
        except ValueError as exc:  # pydantic: a key too long, inputs that are not JSON data
            raise InvalidArgument(f"cannot send this start request: {exc}") from None
        await self._send(request.subject(), payload, request_msg_id(request), "starting")
        return RunHandle(self, workflow_id)

    async def cancel(
        self, workflow_id: str, *, reason: str = "cancelled by user", force: bool = False
    ) -> None:
        """Ask the engine to cancel a workflow.

        Running jobs are told to stop; jobs whose condition holds under cancellation
        (``if: always()``) still run unless ``force``. Cancelling an ended workflow changes
        nothing. Raises ``WorkflowNotFound`` for an id that was never started.
        """
        await self._require_known(workflow_id)
        try:
            request = CancelRequest(workflow_id=workflow_id, reason=reason, force=force)
        except ValueError as exc:
            raise InvalidArgument(f"cannot send this cancel request: {exc}") from None
        # A forced cancel must not be de-duplicated against a plain one sent just before.
        msg_id = request_msg_id(request) + (".force" if force else "")
        await self._send(request.subject(), request.model_dump_json().encode(), msg_id, "cancel")

    async def _send(self, subject: str, payload: bytes, msg_id: str, what: str) -> None:
        js = self._nc.jetstream()
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                with translated(f"{what} {subject.rsplit('.', 1)[-1]}", url=self._url):
                    await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
                return
            except JetworkError as exc:
                # The same msg id makes a retry after a lost ack harmless.
                if not exc.retryable or attempt == _PUBLISH_ATTEMPTS:
                    raise

    # --- reading the log -------------------------------------------------------------------------

    async def exists(self, workflow_id: str) -> bool:
        """True when the workflow has started, or its start request waits for an engine."""
        try:
            await self._require_known(workflow_id)
        except WorkflowNotFound:
            return False
        return True

    async def status(self, workflow_id: str) -> WorkflowView:
        """The workflow's current view, folded from its history (no projection lag).

        Raises ``WorkflowNotFound`` for an unknown id (``WorkflowNotStarted``, a subclass, when
        its start request is still waiting for an engine).
        """
        state = await self._state(workflow_id)
        return await self._with_live_workers(workflow_view(state))

    async def history(self, workflow_id: str) -> builtins.list[RecordedEvent]:
        """Every event of the workflow (workflow and job actors) in log order: the audit trail.

        Raises ``WorkflowNotFound`` when it has none.
        """
        require_id(workflow_id)
        with translated(f"reading the history of {workflow_id}", url=self._url):
            events = await self._store.history(workflow_id)
        if not events:
            await self._raise_not_found(workflow_id)
        return events

    async def wait(self, workflow_id: str, *, timeout: float | None = None) -> WorkflowView:
        """Wait until the workflow has ended and return its final view.

        Follows the workflow actor's events (no polling). Raises ``WaitTimeout`` after
        ``timeout`` seconds (the workflow keeps running) and ``WorkflowNotFound`` for an id
        that was never started.
        """
        require_id(workflow_id)
        if timeout is not None and timeout <= 0:
            raise InvalidArgument(f"timeout must be positive, got {timeout!r}")
        await self._require_known(workflow_id)
        try:
            async with asyncio.timeout(timeout):
                # From the first event on: an end recorded before we subscribed is seen too.
                tail = self._tail(subjects.workflow_actor_filter(workflow_id), from_start=True)
                async with contextlib.aclosing(tail) as events:
                    async for recorded in events:
                        if recorded.event.event_type in _TERMINAL_TYPES:
                            break
        except TimeoutError:
            current = await self._current_view(workflow_id)
            raise WaitTimeout(
                workflow_id,
                timeout or 0.0,
                status=current.status if current else None,
                waiting=describe_waiting(current) if current else None,
            ) from None
        return await self.status(workflow_id)

    async def follow(self, workflow_id: str) -> AsyncGenerator[WorkflowView, None]:
        """Yield the workflow's view after every event, from its start until it has ended.

        What a live view draws. Raises ``WorkflowNotFound`` for an id that was never started.
        """
        await self._require_known(workflow_id)
        state = WorkflowState(workflow_id=workflow_id)
        workers = LiveWorkers(self._live_workers)
        tail = self._tail(subjects.workflow_events(workflow_id), from_start=True)
        async with contextlib.aclosing(tail) as events:
            async for recorded in events:
                state = workflow.replay([recorded], state)
                if state.status is None:
                    continue
                yield await workers.count(workflow_view(state))
                if state.status.is_terminal:
                    return

    async def subscribe(
        self,
        *,
        workflow_id: str | None = None,
        job: str | None = None,
        event_type: str | None = None,
        from_start: bool = False,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Yield events as they are appended, filtered by workflow, job and event type.

        With ``from_start`` the matching events already in the log come first. Runs until the
        caller stops iterating. Raises ``InvalidArgument`` for a bad id or an unknown type.
        """
        tail = self._tail(event_filter(workflow_id, job, event_type), from_start=from_start)
        async with contextlib.aclosing(tail) as events:
            async for recorded in events:
                yield recorded

    async def logs(
        self, workflow_id: str, job: str, *, follow: bool = False
    ) -> AsyncGenerator[LogLine, None]:
        """The job's log lines in order, all attempts; with ``follow``, until the job has ended.

        Raises ``WorkflowNotFound`` or ``JobNotFound`` for an unknown workflow or job.
        """
        async with contextlib.aclosing(self.log_entries(workflow_id, job, follow=follow)) as lines:
            async for line in lines:
                if isinstance(line, LogLine):
                    yield line

    async def log_entries(
        self, workflow_id: str, job: str, *, follow: bool = False, claims: bool = False
    ) -> AsyncGenerator[LogLine | Claim, None]:
        """Like ``logs``; with ``claims`` a ``Claim`` comes before each claim's lines (one per
        ``JobStarted``: every attempt, and a lease taken over within one), also for a claim that
        wrote nothing. What ``jetwork logs`` prints its ``── attempt N ──`` headers from.
        """
        state = await self._state(workflow_id)
        require_id(job, what="job name")
        if job not in state.order:
            raise JobNotFound(workflow_id, job, state.order)
        reader = LogReader(self._nc, self._store, workflow_id, job)
        with translated(f"reading the logs of {workflow_id}/{job}", url=self._url):
            async with contextlib.aclosing(reader.lines(follow=follow, claims=claims)) as lines:
                async for line in lines:
                    yield line

    async def dead_letters(self, limit: int = 100) -> builtins.list[DeadLetter]:
        """The newest ``limit`` inputs jetwork could not process, oldest first."""
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        with translated("reading dead letters", url=self._url):
            return await list_dead_letters(self._nc, limit=limit)

    # --- projections -----------------------------------------------------------------------------

    async def list(
        self, *, status: str | None = None, name: str | None = None, limit: int = 50
    ) -> builtins.list[WorkflowSummary]:
        """Workflow summaries, newest first, from the projections (which may lag a little)."""
        if status is not None and status not in {s.value for s in WorkflowStatus}:
            known = ", ".join(s.value for s in WorkflowStatus)
            raise InvalidArgument(f"unknown status {status!r} (one of: {known})")
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        with translated("listing workflows", url=self._url):
            rows = await self._reader().list(status=status, name=name, limit=limit)
        if not any(row.waiting_for for row in rows):
            return rows
        live = live_capabilities(await self._live_workers())
        return [summary_with_live_workers(row, live) for row in rows]

    async def workers(self) -> WorkerList:
        """The live workers, by id (``stale`` marks one that missed its recent heartbeats).

        A list of ``WorkerInfo``; its ``unserved`` lists the label sets with dispatches waiting
        that no live (not stale) worker serves: work that waits until such a worker starts.
        """
        with translated("listing workers", url=self._url):
            found = await self._reader().workers()
            return WorkerList(found, unserved=await self._reader().unserved(found))

    async def lag(self) -> int:
        """Events the projector has not applied yet (what ``list`` may be missing)."""
        with translated("reading the projector's lag", url=self._url):
            return await self._reader().lag()

    async def rebuild_projections(self) -> RebuildStats:
        """Rebuild every view from the event log into a new generation and switch to it."""
        with translated("rebuilding projections", url=self._url):
            return await rebuild(self._nc)

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
        return state

    async def _current_view(self, workflow_id: str) -> WorkflowView | None:
        try:
            return await self.status(workflow_id)
        except JetworkError:
            return None

    async def _live_workers(self) -> builtins.list[WorkerInfo]:
        with translated("listing workers", url=self._url):
            return await self._reader().workers()

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
            last = await self._store.last_seq(ActorRef.workflow(workflow_id))
        if last == 0:
            raise WorkflowNotFound(workflow_id)

    async def _start_pending(self, workflow_id: str) -> bool:
        js = self._nc.jetstream()
        with translated(f"looking for the start of {workflow_id}", url=self._url):
            try:
                await js.get_last_msg(
                    subjects.COMMANDS_STREAM, subjects.command("start", workflow_id)
                )
            except NotFoundError:
                return False
        return True

    async def _raise_not_found(self, workflow_id: str) -> None:
        if await self._start_pending(workflow_id):
            raise WorkflowNotStarted(workflow_id)
        raise WorkflowNotFound(workflow_id)

    async def _tail(
        self, filter_subject: str, *, from_start: bool
    ) -> AsyncGenerator[RecordedEvent, None]:
        with translated(f"following {filter_subject}", url=self._url):
            tail = cast(
                AsyncGenerator[RecordedEvent, None],
                self._store.subscribe(filter_subject, from_seq=1 if from_start else None),
            )
            async with contextlib.aclosing(tail) as events:
                async for recorded in events:
                    yield recorded


class _Connecting:
    """``Client.connect(...)``: awaitable, and an async context manager that closes on exit."""

    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self._client: Client | None = None

    async def _open(self) -> Client:
        try:
            nc = await connect(self._settings)
        except ServerUnavailable:
            # A client never starts a server: say what a client user can do.
            raise ServerUnavailable(
                f"cannot reach the NATS server at {self._settings.url}. Is `jetwork server` "
                "running? Point at another server with --nats URL or JETWORK_NATS_URL."
            ) from None
        return Client(nc, url=self._settings.url, owns_connection=True)

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._open()
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()


def event_filter(
    workflow_id: str | None = None, job: str | None = None, event_type: str | None = None
) -> str:
    """The subject filter for events of one workflow / job / type (``None``: any)."""
    prefix = "evt.*.*"
    if workflow_id is not None:
        wf = require_id(workflow_id)
        prefix = f"evt.{subjects.partition_of(wf)}.{wf}"
    if job is not None:
        require_id(job, what="job name")
    if event_type is None:
        if job is not None:
            return f"{prefix}.job.{job}.>"
        return f"{prefix}.>" if workflow_id is not None else subjects.EVENTS_ALL
    if event_type in _WORKFLOW_EVENT_TYPES:
        if job is not None:
            raise InvalidArgument(f"{event_type} is a workflow event: it has no job")
        return f"{prefix}.wf.{event_type}"
    if event_type in _JOB_EVENT_TYPES:
        # A JobQueued subject has one more token: the label set it is dispatched to.
        label_set = ".*" if event_type == subjects.JOB_QUEUED else ""
        return f"{prefix}.job.{job or '*'}.{event_type}{label_set}"
    known = ", ".join(sorted(_WORKFLOW_EVENT_TYPES | _JOB_EVENT_TYPES))
    raise InvalidArgument(f"unknown event type {event_type!r} (one of: {known})")


def _connected_url(nc: NATS) -> str:
    server = getattr(nc, "connected_url", None)
    return server.geturl() if server is not None else "the NATS server"


def dumps_view(view: WorkflowView) -> str:
    """The stable JSON of a ``WorkflowView`` (what ``status --json`` prints), indented."""
    return orjson.dumps(view.to_json_dict(), option=orjson.OPT_INDENT_2).decode()


__all__ = [
    "Claim",
    "Client",
    "LogLine",
    "RunHandle",
    "WorkerList",
    "WorkflowSource",
    "dumps_view",
    "event_filter",
]
