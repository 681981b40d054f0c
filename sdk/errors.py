"""Errors the client and the CLI raise on top of ``events.errors`` (all are ``JetworkError``)."""

from __future__ import annotations

from collections.abc import Iterable

from events.errors import JetworkError, WorkflowNotFound


class WaitTimeout(JetworkError):
    """A workflow did not end within the time given to ``wait``; it keeps running."""

    retryable = True

    def __init__(
        self,
        workflow_id: str,
        timeout: float,
        *,
        status: str | None = None,
        waiting: str | None = None,
    ) -> None:
        where = f" (still {status})" if status else ""
        why = f"; {waiting}" if waiting else ""
        super().__init__(f"workflow {workflow_id!r} did not end within {timeout:g}s{where}{why}")
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.status = status
        self.waiting = waiting


class JobNotFound(JetworkError):
    """The workflow exists but has no job of that name."""

    def __init__(self, workflow_id: str, job: str, known: Iterable[str]) -> None:
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"workflow {workflow_id!r} has no job {job!r} (its jobs: {names})")
        self.workflow_id = workflow_id
        self.job = job


class InvalidArgument(JetworkError, ValueError):
    """An argument given to the client or the CLI cannot be used (a bad id, input or filter)."""


class WorkflowNotStarted(WorkflowNotFound):
    """The workflow's start request is waiting for an engine: no event of it is stored yet."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(workflow_id)
        self.args = (
            f"workflow {workflow_id!r} is not started yet: its start request waits for an "
            "engine (is `jetwork server` running?)",
        )
