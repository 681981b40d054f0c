"""Nothing waits silently: which queued work no live worker can take.

A job is queued until a worker offering its labels (and its ``uses:`` handler) claims it; if no
live worker offers them, it waits for one to start. Views record what each queued job needs
(``WaitingFor``); these pure functions say how many live workers offer it, from the workers'
own ``jw_workers`` entries. ``UnservedLabelSet`` is what ``jetwork workers`` lists: a label set in
use (``jw_labelsets``) with dispatches waiting and no live worker serving it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from events import namespaces
from events.dispatch import HANDLER_PREFIX, capabilities, requirement_set, serves
from projections.views import JobView, WaitingFor, WorkflowSummary, WorkflowView

Capabilities = Sequence[frozenset[str]]


class UnservedLabelSet(BaseModel):
    """A label set with ``waiting`` dispatches on ``job.<token>`` and no live worker serving it.

    ``waiting`` counts the dispatch messages stored for it: jobs queued for it, plus any of a job
    cancelled or failed while it waited (the first worker serving the set drops those).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: str
    labels: tuple[str, ...] = ()
    handler: str | None = None
    waiting: int = 0
    namespace: str = "default"

    @classmethod
    def of(cls, requirements: Iterable[str], *, token: str, waiting: int) -> UnservedLabelSet:
        reqs = sorted(requirements)
        handlers = [r.removeprefix(HANDLER_PREFIX) for r in reqs if r.startswith(HANDLER_PREFIX)]
        ns = namespaces.of_members(reqs)
        return cls(
            token=token,
            labels=tuple(
                r
                for r in reqs
                if not r.startswith(HANDLER_PREFIX) and not r.startswith(namespaces.MEMBER_PREFIX)
            ),
            handler=handlers[0] if handlers else None,
            waiting=waiting,
            namespace=namespaces.shown(ns),
        )

    def describe(self) -> str:
        return WaitingFor(labels=self.labels, handler=self.handler).describe()


class Worker(Protocol):
    """What ``live_capabilities`` reads of a worker (``projections.reader.WorkerInfo``)."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def handlers(self) -> tuple[str, ...]: ...

    @property
    def stale(self) -> bool: ...


def live_capabilities(workers: Iterable[Worker]) -> list[frozenset[str]]:
    """What each live worker offers (labels plus ``@handler``); a stale worker counts as gone."""
    return [capabilities(w.labels, w.handlers) for w in workers if not w.stale]


def serving(need: WaitingFor, live: Capabilities) -> int:
    """How many of the ``live`` workers offer what ``need`` asks for."""
    reqs = requirement_set(need.labels, need.handler)
    return sum(1 for caps in live if serves(caps, reqs))


def _counted(need: WaitingFor, live: Capabilities) -> WaitingFor:
    return need.model_copy(update={"live_workers": serving(need, live)})


def with_live_workers(view: WorkflowView, live: Capabilities) -> WorkflowView:
    """``view`` with ``live_workers`` counted for each queued job."""
    if not any(job.waiting_for is not None for job in view.jobs.values()):
        return view
    jobs: dict[str, JobView] = {}
    for name, job in view.jobs.items():
        if job.waiting_for is not None:
            job = job.model_copy(update={"waiting_for": _counted(job.waiting_for, live)})
        jobs[name] = job
    return view.model_copy(update={"jobs": jobs})


def summary_with_live_workers(row: WorkflowSummary, live: Capabilities) -> WorkflowSummary:
    if not row.waiting_for:
        return row
    counted = tuple(_counted(need, live) for need in row.waiting_for)
    return row.model_copy(update={"waiting_for": counted})


def waiting_jobs(view: WorkflowView) -> dict[str, WaitingFor]:
    """The queued jobs known to wait for a worker that no live worker is."""
    return {
        name: job.waiting_for
        for name, job in view.jobs.items()
        if job.waiting_for is not None and job.waiting_for.unserved
    }


def describe_waiting(view: WorkflowView) -> str | None:
    """``job gpu-test waits for a worker offering labels gpu: none is live`` (None: none waits)."""
    waiting = waiting_jobs(view)
    if not waiting:
        return None
    parts = [
        f"job {name} waits for a worker offering {need.describe()}"
        for name, need in waiting.items()
    ]
    return "; ".join(parts) + ": no live worker does"
