"""The one error root and its few, factual subclasses.

Retryability is data on the error (``retryable``), never inferred from the class by callers.
nats-py exceptions are translated at the layer that talks to NATS and never reach users.
"""

from __future__ import annotations


class JetworkError(Exception):
    """Root of every error jetwork raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConcurrencyConflict(JetworkError):
    """Another writer appended to the actor first; reload and decide again."""

    retryable = True

    def __init__(self, *, actor: str, expected_seq: int, actual_seq: int | None) -> None:
        actual = "unknown" if actual_seq is None else str(actual_seq)
        super().__init__(
            f"concurrency conflict on {actor}: expected last sequence {expected_seq}, "
            f"actual {actual}"
        )
        self.actor = actor
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq


class UndecodableEvent(JetworkError):
    """A stored message is not a known, well-formed event."""

    def __init__(self, *, subject: str, seq: int, reason: str) -> None:
        super().__init__(f"cannot decode event at {subject} (stream sequence {seq}): {reason}")
        self.subject = subject
        self.seq = seq
        self.reason = reason


class PayloadTooLarge(JetworkError):
    """A message is bigger than the server accepts."""

    def __init__(self, *, what: str, size: int, limit: int) -> None:
        super().__init__(
            f"{what} is {size} bytes, over the {limit}-byte limit of the NATS server "
            "(max_payload); store large data elsewhere and pass a reference"
        )
        self.size = size
        self.limit = limit


class InvalidWorkflow(JetworkError):
    """A workflow definition has problems; ``problems`` lists every one with its location."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        head = f"invalid workflow {source}" if source else "invalid workflow"
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{head}: {len(problems)} problem(s)\n{lines}")
        self.problems = problems
        self.source = source


class WorkflowNotFound(JetworkError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} not found")
        self.workflow_id = workflow_id


class CommandRefused(JetworkError):
    """An operator's command makes no sense in the workflow's current state (pausing an ended
    workflow, skipping a succeeded job, retrying a running workflow): nothing was recorded."""

    def __init__(
        self, workflow_id: str, command: str, reason: str, *, message: str | None = None
    ) -> None:
        # ``message``: the whole sentence as the engine wrote it (its answer to a client).
        super().__init__(message or f"cannot {command} workflow {workflow_id!r}: {reason}")
        self.workflow_id = workflow_id
        self.command = command
        self.reason = reason


class LeaseLost(JetworkError):
    """The worker no longer holds the job's lease; its result will not count."""


class ServerUnavailable(JetworkError):
    """The NATS server cannot be reached or did not come up."""

    retryable = True


class ServerRefused(ServerUnavailable):
    """The NATS server answered but refused who we are (credentials, nkey, token, TLS)."""

    retryable = False


class StoreError(JetworkError):
    """JetStream refused or failed an operation for a reason other than a conflict."""
