"""Generations of the projections: which set of views readers use, and who fills it.

Every key the projector writes carries its generation (``g<n>.…`` in ``jw_workflows``,
``wfidx.g<n>.…`` in the index), and each generation has its own positions (``g<n>.pos.<p>`` in
``jw_projector``, ``projections.positions``). The current generation is one small document in KV
``jw_projector`` (key ``generation``), changed only by compare-and-set.

A rebuild fills a new generation from the start of the log while the live projector keeps the
current one up to date, then switches the pointer: readers follow at once, and the live
projector moves over to the new generation, resuming after the rebuild's positions. Older
generations are then deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from nats.aio.client import Client as NATS

from events import subjects
from events.errors import StoreError
from projections._nats import Direct, Publisher, describe, error_code

_BUCKET_STREAM = f"KV_{subjects.KV_PROJECTOR}"
_POINTER = "generation"
_ALLOCATED = "allocated"
_CONFLICT_CODES = frozenset({10071, 10164})


class SwitchRefused(StoreError):
    """A newer generation became current while this one was being built."""


@dataclass(frozen=True, slots=True)
class Pointer:
    """The current generation; ``floor`` is the oldest one that may still hold data."""

    generation: int = 1
    floor: int = 1
    revision: int = 0  # of the KV entry; 0 when it was never written
    # Every view of the generation was written with its secondary entries (``projections.keys``):
    # it was created by this code, not by a projector from before them (an upgrade lists by
    # scanning until ``jetwork projections rebuild``).
    keyed: bool = False


class Generations:
    def __init__(
        self, nc: NATS, *, publisher: Publisher | None = None, timeout: float = 5.0
    ) -> None:
        self._direct = Direct(nc, _BUCKET_STREAM, timeout=timeout)
        self._own_publisher = publisher is None
        self._publisher = publisher or Publisher(nc, timeout=timeout)

    async def close(self) -> None:
        await self._direct.close()
        if self._own_publisher:
            await self._publisher.close()

    async def current(self) -> Pointer:
        stored = await self._direct.last(_subject(_POINTER))
        if stored is None or stored.is_tombstone:
            return Pointer()
        doc = orjson.loads(stored.data)
        generation = int(doc["generation"])
        keyed = doc.get("keyed") == generation
        return Pointer(generation, int(doc.get("floor", 1)), stored.seq, keyed)

    async def ensure(self) -> Pointer:
        """The current generation, recorded as generation 1 when there is none yet."""
        pointer = await self.current()
        if pointer.revision:
            return pointer
        doc = {"generation": 1, "floor": 1, "keyed": 1}
        await self._put(_POINTER, doc, expected=0, tolerate=True)
        return await self.current()

    async def allocate(self) -> int:
        """A generation number no one else has been given (for a rebuild)."""
        for _ in range(50):
            pointer = await self.current()
            stored = await self._direct.last(_subject(_ALLOCATED))
            revision = stored.seq if stored is not None else 0
            allocated = int(orjson.loads(stored.data)["generation"]) if stored else 0
            fresh = max(pointer.generation, allocated) + 1
            if await self._put(_ALLOCATED, {"generation": fresh}, expected=revision):
                return fresh
        raise StoreError("could not allocate a projection generation (too much contention)")

    async def switch(self, generation: int) -> Pointer:
        """Make ``generation`` current; refused when the current one is already newer."""
        for _ in range(50):
            pointer = await self.current()
            if pointer.generation >= generation:
                raise SwitchRefused(
                    f"projection generation {pointer.generation} became current while "
                    f"generation {generation} was being built"
                )
            doc = {"generation": generation, "floor": pointer.floor, "keyed": generation}
            if await self._put(_POINTER, doc, expected=pointer.revision):
                return Pointer(generation, pointer.floor, 0, keyed=True)
        raise StoreError("could not switch the projection generation (too much contention)")

    async def raise_floor(self, floor: int) -> None:
        """Record that generations below ``floor`` were deleted."""
        for _ in range(50):
            pointer = await self.current()
            if pointer.floor >= floor or not pointer.revision:
                return
            doc = {"generation": pointer.generation, "floor": floor}
            if pointer.keyed:
                doc["keyed"] = pointer.generation
            if await self._put(_POINTER, doc, expected=pointer.revision):
                return

    async def _put(
        self, key: str, doc: dict[str, int], *, expected: int, tolerate: bool = False
    ) -> bool:
        headers = {"Nats-Expected-Last-Subject-Sequence": str(expected)}
        answer = await self._publisher.wait(
            await self._publisher.send(_subject(key), orjson.dumps(doc), headers),
            f"writing {subjects.KV_PROJECTOR}.{key}",
        )
        if "error" not in answer:
            return True
        if error_code(answer) in _CONFLICT_CODES:
            return tolerate
        raise StoreError(f"writing {subjects.KV_PROJECTOR}.{key} failed: {describe(answer)}")


def _subject(key: str) -> str:
    return f"$KV.{subjects.KV_PROJECTOR}.{key}"
