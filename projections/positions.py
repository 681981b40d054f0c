"""How far the projections have got, per partition: stored beside the views, read to resume.

A partition's **position** ``S`` says: every event of the partition up to stream sequence ``S``
is reflected in the stored views of the generation. The projector reads each partition's events
in order (an ordered consumer, no acks), so the position is the last event it was given, unless a
workflow's view is still unwritten (held for a moment, or its write failed): then it is just below
that workflow's first unwritten event. Positions are written to KV ``jw_projector`` under
``g<n>.pos.<p>`` every little while (``every``), and a projector taking a partition over resumes
after its position: what was projected after the last write is projected again, and newest-wins
writes make that harmless.

``pending`` answers the readers' question "how many events are not in the views yet": per
partition, the events after its stored position (one direct get each, which reports how many
more match). The server answers it by scanning the partition's subjects from that position to
the end of the stream: ~2 ms of its CPU per partition on a stream of 120,000 events. A caller that
asks again and again (the web UI through the gateway, the metrics sampler, a benchmark waiting
for quiet) uses a ``LagProbe``, which scans only what was appended since it last found a
partition clean.
"""

from __future__ import annotations

import time
from collections import defaultdict

from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from events import subjects
from projections._nats import Direct


def position_key(generation: int, partition: int) -> str:
    return f"g{generation}.pos.{partition}"


class Positions:
    """The positions of the partitions one projector owns, for one generation."""

    def __init__(self, kv: KeyValue, generation: int, *, every: float) -> None:
        self._kv = kv
        self.generation = generation
        self._every = every
        self._given: dict[int, int] = {}  # last event seen per partition
        self._stored: dict[int, int] = {}  # last position written per partition
        # Per partition: workflow -> its first event not reflected in a stored view.
        self._unwritten: dict[int, dict[str, int]] = defaultdict(dict)
        self._next_write = 0.0

    async def load(self, partition: int) -> int:
        """The stored position of ``partition`` (0: from the start), now tracked here."""
        try:
            entry = await self._kv.get(position_key(self.generation, partition))
            position = int(entry.value or b"0")
        except KeyNotFoundError:
            position = 0
        self._given[partition] = self._stored[partition] = position
        self._unwritten.pop(partition, None)
        return position

    def forget(self, partition: int) -> None:
        self._given.pop(partition, None)
        self._stored.pop(partition, None)
        self._unwritten.pop(partition, None)

    def given(self, partition: int, seq: int) -> None:
        """An event of ``partition`` was handed over (they come in order)."""
        if seq > self._given.get(partition, 0):
            self._given[partition] = seq

    def given_through(self, partition: int) -> int:
        """The last event of ``partition`` handed over (or its stored position)."""
        return self._given.get(partition, 0)

    def unwritten(self, partition: int, wf: str, seq: int) -> None:
        """Event ``seq`` of ``wf`` is folded but its view not stored yet."""
        waiting = self._unwritten[partition]
        if wf not in waiting or seq < waiting[wf]:
            waiting[wf] = seq

    def written(self, partition: int, wf: str) -> None:
        """``wf``'s view is stored with everything folded so far."""
        self._unwritten[partition].pop(wf, None)

    def position(self, partition: int) -> int:
        waiting = self._unwritten.get(partition)
        given = self._given.get(partition, 0)
        if waiting:
            return min(given, min(waiting.values()) - 1)
        return given

    def due_in(self) -> float:
        """Seconds until the next write of the positions may happen (0 or less: now)."""
        return self._next_write - time.monotonic()

    async def save(self, *, force: bool = False) -> None:
        """Write the positions that moved, at most every ``every`` seconds (or now: ``force``)."""
        now = time.monotonic()
        if not force and now < self._next_write:
            return
        self._next_write = now + self._every
        for partition in list(self._given):
            position = self.position(partition)
            if position > self._stored.get(partition, 0):
                await self._kv.put(position_key(self.generation, partition), b"%d" % position)
                self._stored[partition] = position


async def stored_positions(direct: Direct, generation: int) -> dict[int, int]:
    """Every partition's stored position in ``generation`` (0 when none): one request for
    all, to the KV's stream (``direct`` reads ``KV_jw_projector``)."""
    keys = {
        f"$KV.{subjects.KV_PROJECTOR}.{position_key(generation, p)}": p
        for p in range(subjects.PARTITIONS)
    }
    found = dict.fromkeys(range(subjects.PARTITIONS), 0)
    for subject, stored in (await direct.last_of_each(list(keys))).items():
        if not stored.is_tombstone:
            found[keys[subject]] = int(stored.data or b"0")
    return found


async def pending(nc: NATS, positions: dict[int, int], *, timeout: float = 5.0) -> int:
    """How many events lie after the given positions (what the views do not reflect yet)."""
    direct = Direct(nc, subjects.EVENTS_STREAM, timeout=timeout)
    try:
        return sum([await events_after(direct, p, position) for p, position in positions.items()])
    finally:
        await direct.close()


async def events_after(direct: Direct, partition: int, seq: int) -> int:
    """How many events of ``partition`` the stream holds after sequence ``seq`` (one request)."""
    found, more = await direct.next(f"evt.{partition}.>", from_seq=seq + 1, limit=1)
    return len(found) + more


async def lag(nc: NATS, generation: int, *, timeout: float = 5.0) -> int:
    """Events not reflected in ``generation``'s stored views yet, over every partition."""
    probe = LagProbe(nc, timeout=timeout)
    try:
        return await probe.lag(generation)
    finally:
        await probe.close()


class LagProbe:
    """``lag`` for a caller that asks again and again: what it found before narrows the scan.

    When a partition had no event after its position ``P`` up to the stream's last sequence
    ``L`` (read before that scan), no later answer needs to look at ``(P, L]`` again while the
    position is at least ``P``: the scan starts after ``max(position, L)``, and none is made when
    the stream has nothing after that. Positions only grow within a generation; one that went
    back, or another generation, is scanned in full again.
    """

    def __init__(self, nc: NATS, *, timeout: float = 5.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._direct = Direct(nc, subjects.EVENTS_STREAM, timeout=timeout)
        self._positions = Direct(nc, f"KV_{subjects.KV_PROJECTOR}", timeout=timeout)
        self._generation: int | None = None
        self._clean: dict[int, tuple[int, int]] = {}  # partition -> (position, clean through)

    async def lag(self, generation: int) -> int:
        """Events not reflected in ``generation``'s stored views yet, over every partition."""
        if generation != self._generation:
            self._generation, self._clean = generation, {}
        positions = await stored_positions(self._positions, generation)
        # Read after the positions: an event appended meanwhile is above one or the other.
        info = await self._nc.jetstream().stream_info(subjects.EVENTS_STREAM)
        last = int(info.state.last_seq)
        total = 0
        for partition, position in positions.items():
            start = position
            known = self._clean.get(partition)
            if known is not None and position >= known[0]:
                start = max(position, known[1])
            count = await events_after(self._direct, partition, start) if start < last else 0
            if count == 0:
                self._clean[partition] = (position, last)
            total += count
        return total

    async def close(self) -> None:
        await self._direct.close()
        await self._positions.close()
