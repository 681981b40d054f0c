"""Which events of a subscription belong to the client's namespace.

An event's subject names its workflow, not the workflow's namespace: that is recorded once, on
the workflow's ``WorkflowStarted``. A subscription keeps a bounded cache workflow id → namespace,
filled from a ``WorkflowStarted`` passing in the stream (a new workflow's first event) or, on a
miss, by one direct get of the workflow's ``WorkflowStarted`` subject: one lookup per workflow
seen, not per event, however busy the log.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

from events import subjects
from events.base import RecordedEvent
from events.catalog import WorkflowDeleted, WorkflowStarted
from events.errors import UndecodableEvent
from events.store import EventStore

# Workflows whose namespace a subscription remembers; the least recently seen are forgotten
# (and looked up again should another of their events pass).
CACHE_SIZE: Final = 4096


class NamespaceScope:
    """Admits the events of workflows started in namespace ``ns`` (None: the default one)."""

    def __init__(self, store: EventStore, ns: str | None, *, size: int = CACHE_SIZE) -> None:
        self._store = store
        self._ns = ns
        self._size = size
        self._known: OrderedDict[str, str | None] = OrderedDict()
        self.lookups = 0  # direct gets made (what the cache saves; read by tests)

    async def admits(self, recorded: RecordedEvent) -> bool:
        """Whether the event's workflow runs in the namespace. A deleted workflow's tombstone
        says its namespace itself (its start is purged). Another event of a workflow with no
        ``WorkflowStarted`` is not admitted, and nothing is remembered: the next event of that
        workflow asks again."""
        event = recorded.event
        if isinstance(event, WorkflowStarted):
            self._remember(event.workflow_id, event.namespace)
            return event.namespace == self._ns
        if isinstance(event, WorkflowDeleted):
            self._known.pop(event.workflow_id, None)  # no more of its events will come
            return event.namespace == self._ns
        workflow_id = _workflow_of(recorded.subject)
        if workflow_id is None:
            return False
        if workflow_id in self._known:
            self._known.move_to_end(workflow_id)
            return self._known[workflow_id] == self._ns
        started = await self._started(workflow_id)
        if started is None:
            return False
        self._remember(workflow_id, started.namespace)
        return started.namespace == self._ns

    async def _started(self, workflow_id: str) -> WorkflowStarted | None:
        self.lookups += 1
        try:
            found = await self._store.read(subjects.workflow_event(workflow_id, "WorkflowStarted"))
        except UndecodableEvent:
            return None  # garbage where its start should be: no namespace to admit it by
        started = found[0].event if found else None
        return started if isinstance(started, WorkflowStarted) else None

    def _remember(self, workflow_id: str, namespace: str | None) -> None:
        self._known[workflow_id] = namespace
        self._known.move_to_end(workflow_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)


def _workflow_of(subject: str) -> str | None:
    """The workflow id of an event subject ``evt.<partition>.<wf>.…``."""
    parts = subject.split(".", 3)
    return parts[2] if len(parts) >= 3 and parts[0] == "evt" else None
