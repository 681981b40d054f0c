"""The client's reads: a workflow's status and history folded from the log itself (no lag),
dead letters, and what the projections hold (listings, workers, the projector's lag)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from events.base import RecordedEvent
from events.catalog import WorkflowStarted, WorkflowStatus
from events.dead_letters import DeadLetter, list_dead_letters
from events.errors import WorkflowNotFound
from projections.rebuild import RebuildStats, default_processes, rebuild
from projections.search import ListFilter, input_text
from projections.views import WorkflowSummary, WorkflowView, workflow_view
from projections.waiting import live_capabilities, summary_with_live_workers
from sdk.client.base import ClientBase
from sdk.client.hooks import HookUrls
from sdk.client.translate import require_id, translated
from sdk.client.workers import WorkerList
from sdk.errors import InvalidArgument


class ClientReads(ClientBase):
    """``Client.exists``, ``status``, ``history``, ``dead_letters`` (the log) and ``list``,
    ``workers``, ``lag``, ``rebuild_projections`` (the projections)."""

    # --- reading the log -------------------------------------------------------------------------

    _hooks: HookUrls | None = None

    def _hook_urls(self) -> HookUrls:
        if self._hooks is None:
            self._hooks = HookUrls(self._nc)
        return self._hooks

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
        view = await self._with_live_workers(workflow_view(state))
        return await self._hook_urls().add(view, state)

    async def history(self, workflow_id: str) -> builtins.list[RecordedEvent]:
        """Every event of the workflow (workflow and job actors) in log order: the audit trail.

        Raises ``WorkflowNotFound`` when it has none.
        """
        require_id(workflow_id)
        with translated(f"reading the history of {workflow_id}", url=self._url):
            events = await self._store.history(workflow_id)
        if not events:
            await self._raise_not_found(workflow_id)
        first = events[0].event
        if isinstance(first, WorkflowStarted) and first.namespace != self._ns:
            raise WorkflowNotFound(workflow_id)  # another namespace's
        return events

    async def dead_letters(self, limit: int = 100) -> builtins.list[DeadLetter]:
        """The newest ``limit`` inputs jetwork could not process, oldest first."""
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        with translated("reading dead letters", url=self._url):
            return await list_dead_letters(self._nc, limit=limit)

    # --- projections -----------------------------------------------------------------------------

    async def list(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 50,
        since: datetime | None = None,
        until: datetime | None = None,
        inputs: Mapping[str, Any] | None = None,
        labels: Sequence[str] = (),
        parent: str | None = None,
    ) -> builtins.list[WorkflowSummary]:
        """Workflow summaries, newest first, from the projections (which may lag a little).

        ``since``/``until``: started in that time (inclusive; aware datetimes); ``inputs``:
        started with these inputs (a value matches by equality, or its JSON text: ``{"n":
        "3"}`` matches ``n: 3``); ``labels``: some job needs each of them; ``parent``: started
        as a sub-workflow of that workflow.
        """
        if since is not None and until is not None and since > until:
            raise InvalidArgument(
                f"since ({since.isoformat()}) is after until ({until.isoformat()})"
            )
        where = ListFilter(
            since=since,
            until=until,
            inputs={key: input_text(value) for key, value in (inputs or {}).items()},
            labels=tuple(labels),
            parent=parent,
        )
        if status is not None and status not in {s.value for s in WorkflowStatus}:
            known = ", ".join(s.value for s in WorkflowStatus)
            raise InvalidArgument(f"unknown status {status!r} (one of: {known})")
        if limit < 1:
            raise InvalidArgument(f"limit must be at least 1, got {limit}")
        with translated("listing workflows", url=self._url):
            rows = await self._reader().list(
                status=status, name=name, limit=limit, where=where, namespace=self._ns
            )
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
            every = await self._reader().workers()
            unserved = await self._reader().unserved(every)
        return WorkerList(
            [w for w in every if w.namespace == self._namespace],
            unserved=[ls for ls in unserved if ls.namespace == self._namespace],
        )

    async def lag(self) -> int:
        """Events the projector has not applied yet (what ``list`` may be missing)."""
        with translated("reading the projector's lag", url=self._url):
            return await self._reader().lag()

    async def rebuild_projections(self, *, processes: int | None = None) -> RebuildStats:
        """Rebuild every view from the event log into a new generation and switch to it.

        ``processes``: how many processes share the work, this one included (default: one per
        core, ``projections.rebuild.default_processes``); the helpers connect as this process
        does."""
        with translated("rebuilding projections", url=self._url):
            return await rebuild(self._nc, processes=processes or default_processes())
