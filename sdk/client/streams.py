"""The client's streams: waiting for a workflow's end, following its view, subscribing to events
as they are appended, and a job's log lines; each a tail of the log, never a poll."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import cast

from actors import workflow
from actors.fanout_state import parent_of
from actors.workflow import WorkflowState
from events import subjects
from events.base import RecordedEvent
from events.catalog import JOB_EVENTS, WORKFLOW_EVENTS
from events.errors import JetworkError
from events.store import ActorRef
from projections.views import WorkflowView, workflow_view
from projections.waiting import describe_waiting
from sdk.client.logs import Claim, LogLine, LogReader
from sdk.client.reads import ClientReads
from sdk.client.scope import NamespaceScope
from sdk.client.translate import require_id, translated
from sdk.client.workers import LiveWorkers
from sdk.errors import InvalidArgument, JobNotFound, WaitTimeout

_WORKFLOW_EVENT_TYPES = frozenset(cls.__name__ for cls in WORKFLOW_EVENTS)
_JOB_EVENT_TYPES = frozenset(cls.__name__ for cls in JOB_EVENTS)
_TERMINAL_TYPES = frozenset({"WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled"})
# ``follow`` shows a larger workflow at most every ``_FOLLOW_EVERY`` seconds, not after each event.
_FOLLOW_SINGLY = 256
_FOLLOW_EVERY = 0.05


class ClientStreams(ClientReads):
    """``Client.wait``, ``follow``, ``subscribe``, ``logs`` and ``log_entries``."""

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
                        if recorded.event.event_type in _TERMINAL_TYPES and (
                            await self._still_ended(workflow_id, recorded.seq)
                        ):
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
        A workflow of more than 256 jobs (a large fan-out) is shown at most every 50 ms instead,
        with every event that arrived meanwhile: a view of 10,000 jobs after each of 30,000
        events would never keep up.
        """
        await self._require_known(workflow_id)
        state = WorkflowState(workflow_id=workflow_id)
        workers = LiveWorkers(self._live_workers)
        arrived: asyncio.Queue[RecordedEvent | Exception | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read_into(workflow_id, arrived))
        loop = asyncio.get_running_loop()
        drawn = 0.0
        try:
            while True:
                batch = [await arrived.get()]
                if len(state.jobs) > _FOLLOW_SINGLY:
                    await _gather(arrived, batch, until=drawn + _FOLLOW_EVERY)
                for item in batch:
                    if isinstance(item, Exception):
                        raise item
                    if item is None:
                        return  # the tail ended (it does not, while the connection lasts)
                state = workflow.replay(cast(list[RecordedEvent], batch), state)
                if state.status is None:
                    continue
                yield await workers.count(workflow_view(state))
                drawn = loop.time()
                if state.status.is_terminal and await self._still_ended(
                    workflow_id, state.last_seq
                ):
                    return
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read_into(
        self, workflow_id: str, arrived: asyncio.Queue[RecordedEvent | Exception | None]
    ) -> None:
        tail = self._tail(subjects.workflow_events(workflow_id), from_start=True)
        try:
            async with contextlib.aclosing(tail) as events:
                async for recorded in events:
                    arrived.put_nowait(recorded)
        except Exception as error:  # raised where the views are read
            arrived.put_nowait(error)
        else:
            arrived.put_nowait(None)

    async def _still_ended(self, workflow_id: str, end_seq: int) -> bool:
        """The end at ``end_seq`` is the workflow actor's last event: no operator's retry (or
        anything else) followed it, so following stops there."""
        with translated(f"reading workflow {workflow_id}", url=self._url):
            return await self._store.last_seq(ActorRef.workflow(workflow_id)) <= end_seq

    async def subscribe(
        self,
        *,
        workflow_id: str | None = None,
        job: str | None = None,
        event_type: str | None = None,
        from_start: bool = False,
        from_seq: int | None = None,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Yield events as they are appended, filtered by workflow, job and event type.

        Only events of workflows started in the client's namespace come (a workflow id
        subscribed to before its start included: its events pass once it starts here). With
        ``from_start`` the matching events already in the log come first; ``from_seq`` starts
        at that stream sequence instead (a resume). Runs until the caller stops iterating.
        Raises ``InvalidArgument`` for a bad id or an unknown type, ``WorkflowNotFound`` for a
        ``workflow_id`` started in another namespace.
        """
        if workflow_id is not None:
            await self._require_namespace(require_id(workflow_id))
        if from_seq is not None and from_seq < 1:
            raise InvalidArgument(f"from_seq must be at least 1, got {from_seq!r}")
        scope = NamespaceScope(self._store, self._ns)
        tail = self._tail(
            event_filter(workflow_id, job, event_type),
            from_start=from_start,
            from_seq=from_seq,
        )
        async with contextlib.aclosing(tail) as events:
            async for recorded in events:
                with translated(f"reading workflow of event {recorded.seq}", url=self._url):
                    admitted = await scope.admits(recorded)
                if admitted:
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
        if job not in state.order and parent_of(state.fanouts, job) is None:
            raise JobNotFound(workflow_id, job, state.order)
        reader = LogReader(self._nc, self._store, workflow_id, job)
        with translated(f"reading the logs of {workflow_id}/{job}", url=self._url):
            async with contextlib.aclosing(reader.lines(follow=follow, claims=claims)) as lines:
                async for line in lines:
                    yield line

    async def _current_view(self, workflow_id: str) -> WorkflowView | None:
        try:
            return await self.status(workflow_id)
        except JetworkError:
            return None


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
        # A JobQueued subject has one or two more tokens: the label set it is dispatched to,
        # and its priority level when not the default.
        label_set = ".>" if event_type == subjects.JOB_QUEUED else ""
        return f"{prefix}.job.{job or '*'}.{event_type}{label_set}"
    known = ", ".join(sorted(_WORKFLOW_EVENT_TYPES | _JOB_EVENT_TYPES))
    raise InvalidArgument(f"unknown event type {event_type!r} (one of: {known})")


async def _gather(
    arrived: asyncio.Queue[RecordedEvent | Exception | None],
    batch: list[RecordedEvent | Exception | None],
    *,
    until: float,
) -> None:
    """Add to ``batch`` what arrives until ``until`` (loop time), or the tail's end or error.

    nats-py hands a subscription's messages over one per turn of the event loop, so what is
    queued at any moment is little: waiting is what lets a burst gather into one view."""
    loop = asyncio.get_running_loop()
    while True:
        while not arrived.empty():
            batch.append(arrived.get_nowait())
        left = until - loop.time()
        if left <= 0 or not isinstance(batch[-1], RecordedEvent):
            return
        try:
            async with asyncio.timeout(left):
                batch.append(await arrived.get())
        except TimeoutError:
            return
