"""Which jobs a worker may run before their claim is in the log (``WorkerConfig.claim_window``).

A run that starts before its claim is appended cannot see that its job was cancelled (or failed,
or skipped) after it was queued: the claim's compare-and-set finds out, but only once the run
has begun. So a worker runs a dispatch at once only when it would have heard of such an end:
the engine pushes a cancel notice for every job it ends (``actors.engine.reactions``), and
``Revoked`` keeps the jobs it was told of. That covers the jobs queued after the worker began to
listen: ``listening_from`` is the events stream's last sequence once its notice subscription
was in place (read again after a reconnection, during which notices were lost). An older
dispatch, or one of a job it was told of, is claimed first, as every dispatch was before.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

KEPT: Final = 100_000
"""Jobs remembered at most (the oldest notices go first): ~10 MB at the bound."""


class Revoked:
    """The jobs this worker was told the engine ended, and since when it has been listening."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._jobs: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.listening_from: int | None = None
        """Stream sequence after which every notice reached this worker; None: not listening."""

    def told(self, workflow_id: str, job: str) -> None:
        """A cancel notice arrived for this job."""
        key = (workflow_id, job)
        self._jobs[key] = None
        self._jobs.move_to_end(key)
        while len(self._jobs) > self._kept:
            self._jobs.popitem(last=False)

    def deaf(self) -> None:
        """Notices may have been lost (the connection dropped): no dispatch runs unclaimed
        until ``listening`` says from where on they are heard again."""
        self.listening_from = None

    def listening(self, last_seq: int) -> None:
        """The notice subscription is in place; ``last_seq``: the stream's last sequence now."""
        self.listening_from = last_seq

    def may_run_unclaimed(self, workflow_id: str, job: str, dispatch_seq: int) -> bool:
        """True when a cancel of this dispatch's job would have reached this worker and none
        did: it was queued after the worker began to listen, and no notice names it."""
        since = self.listening_from
        return since is not None and dispatch_seq > since and (workflow_id, job) not in self._jobs
