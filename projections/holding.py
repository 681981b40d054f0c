"""Views held back a moment, so that a busy workflow's view is written once for many events.

Writing a view costs the projector two compare-and-set requests (view and summary), more for a
big view; a running workflow whose events arrive in several batches would pay that for each
batch. Instead, the projector folds every batch at once but *holds* the write of a running
workflow's view for ``settle`` seconds (``ProjectorSettings.settle``), with the workflow's
messages unacked: whatever arrives meanwhile joins the same write. A workflow that ends is
written at once (with everything held for it), so the outcome a user waits for is never late.

Holding is safe because nothing is acked before its view is stored: a projector killed while
holding leaves the messages unacked, and they come back to whoever projects next.

``Holds`` is only the bookkeeping: which workflows are held, since when, with which messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nats.aio.msg import Msg


@dataclass(slots=True)
class _Hold:
    since: float
    messages: list[Msg] = field(default_factory=list)


class Holds:
    """Held workflows, oldest first, and their unacked messages."""

    def __init__(self, *, limit: int) -> None:
        # Beyond ``limit`` held messages, the oldest holds are due at once: the consumer's
        # ``max_ack_pending`` must leave room for them.
        self._limit = limit
        self._holds: dict[str, _Hold] = {}  # insertion order is the order of ``since``
        self.messages = 0

    def __contains__(self, wf: str) -> bool:
        return wf in self._holds

    def __len__(self) -> int:
        return len(self._holds)

    def since(self, wf: str) -> float | None:
        hold = self._holds.get(wf)
        return hold.since if hold is not None else None

    def add(self, wf: str, messages: Sequence[Msg], now: float) -> None:
        """Hold ``messages`` with the workflow's earlier ones (since the first hold)."""
        hold = self._holds.get(wf)
        if hold is None:
            hold = self._holds[wf] = _Hold(since=now)
        hold.messages.extend(messages)
        self.messages += len(messages)

    def take(self, wf: str) -> list[Msg]:
        """Release the workflow: its held messages (none when it was not held)."""
        hold = self._holds.pop(wf, None)
        if hold is None:
            return []
        self.messages -= len(hold.messages)
        return hold.messages

    def due(self, now: float, settle: float) -> list[str]:
        """Workflows held ``settle`` seconds or longer, and the oldest ones beyond the limit."""
        found: list[str] = []
        excess = self.messages - self._limit
        for wf, hold in self._holds.items():
            if now - hold.since < settle and excess <= 0:
                break  # the others were held later still
            found.append(wf)
            excess -= len(hold.messages)
        return found

    def everything(self) -> list[str]:
        return list(self._holds)

    def next_due(self, settle: float) -> float | None:
        """When the oldest hold is due (``time.monotonic`` clock), None when nothing is held."""
        for hold in self._holds.values():
            return hold.since + settle
        return None
