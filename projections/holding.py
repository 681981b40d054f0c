"""Views held back a moment, so that a busy workflow's view is written once for many events.

Writing a view costs the projector two compare-and-set requests (view and summary), more for a
big view; a running workflow whose events arrive in several batches would pay that for each
batch. Instead, the projector folds every batch at once but *holds* the write of a running
workflow's view for ``settle`` seconds (``ProjectorSettings.settle``): whatever arrives meanwhile
joins the same write. A workflow that ends is written at once (with everything held for it), so
the outcome a user waits for is never late.

Holding is safe because a partition's stored position stays below the first event of every
workflow whose view is not written yet (``projections.positions``): a projector killed while
holding leaves the position there, and whoever projects next reads those events again.

``Holds`` is only the bookkeeping: which workflows are held, since when, for how many events.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Hold:
    since: float
    events: int = 0


class Holds:
    """Held workflows, oldest first, and how many events each holds."""

    def __init__(self, *, limit: int) -> None:
        # Beyond ``limit`` held events, the oldest holds are due at once: memory stays bounded
        # and positions do not stay behind for long.
        self._limit = limit
        self._holds: dict[str, _Hold] = {}  # insertion order is the order of ``since``
        self.events = 0

    def __contains__(self, wf: str) -> bool:
        return wf in self._holds

    def __len__(self) -> int:
        return len(self._holds)

    def since(self, wf: str) -> float | None:
        hold = self._holds.get(wf)
        return hold.since if hold is not None else None

    def add(self, wf: str, events: int, now: float) -> None:
        """Hold ``events`` more of the workflow (since its first hold)."""
        hold = self._holds.get(wf)
        if hold is None:
            hold = self._holds[wf] = _Hold(since=now)
        hold.events += events
        self.events += events

    def take(self, wf: str) -> None:
        """Release the workflow (its view is written, or no longer ours)."""
        hold = self._holds.pop(wf, None)
        if hold is not None:
            self.events -= hold.events

    def due(self, now: float, settle: float) -> list[str]:
        """Workflows held ``settle`` seconds or longer, and the oldest ones beyond the limit."""
        found: list[str] = []
        excess = self.events - self._limit
        for wf, hold in self._holds.items():
            if now - hold.since < settle and excess <= 0:
                break  # the others were held later still
            found.append(wf)
            excess -= hold.events
        return found

    def everything(self) -> list[str]:
        return list(self._holds)

    def next_due(self, settle: float) -> float | None:
        """When the oldest hold is due (``time.monotonic`` clock), None when nothing is held."""
        for hold in self._holds.values():
            return hold.since + settle
        return None
