"""Listing entries written in groups: what many concurrent writers ``add`` while the event loop
goes round once is published by one call (``projections.keys``, ``projections.index``).

The projector writes the views of a batch concurrently (``HeldViews._write_held``): each write
adds its entries and waits; the first add of a turn schedules the publication after the
writers already scheduled for that turn have added theirs, so a batch's entries on one subject
become one message instead of one per workflow.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Generic, TypeVar

from events.errors import StoreError
from projections._nats import Publisher, describe

I = TypeVar("I")  # noqa: E741  (an item added)
R = TypeVar("R")  # what its writer gets back
T = TypeVar("T")

GROUP = 256  # workflows one entry message holds at most (~60 bytes each)


class Grouped(Generic[I, R]):
    """Calls ``publish`` once with every item added in one turn of the event loop; each adder
    gets its item's result (``publish`` returns them in the items' order) or its error."""

    def __init__(self, publish: Callable[[list[I]], Awaitable[Sequence[R]]]) -> None:
        self._publish = publish
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def add(self, item: I) -> R:
        return await self.enqueue(item)

    def enqueue(self, item: I) -> asyncio.Future[R]:
        """``add`` without its coroutine: the item's result to await (a writer adding to two
        groups awaits both futures, without a task for each)."""
        loop = asyncio.get_running_loop()
        result: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, result))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return result

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._run(pending))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, pending: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._publish([item for item, _ in pending])
        except Exception as exc:  # each writer fails and tries again later
            for _, result in pending:
                if not result.done():
                    result.set_exception(exc)
            return
        for (_, result), value in zip(pending, results, strict=True):
            if not result.done():
                result.set_result(value)


def chunks(items: Sequence[T], size: int = GROUP) -> Iterable[Sequence[T]]:
    return (items[at : at + size] for at in range(0, len(items), size))


def group_id(prefix: str, members: Iterable[str]) -> str:
    """A group's msg id: the same for the same members, so a repeat after a lost ack finds the
    message stored already."""
    digest = hashlib.sha256("\0".join(members).encode()).hexdigest()[:32]
    return f"{prefix}:{digest}"


async def publish_groups(
    publisher: Publisher, groups: Sequence[tuple[str, bytes, str, int]]
) -> list[int]:
    """Publish ``(subject, body, msg id, workflows listed)`` messages pipelined; their
    sequences, in order."""
    answers = [
        await publisher.send(subject, body, {"Nats-Msg-Id": msg_id})
        for subject, body, msg_id, _ in groups
    ]
    seqs = []
    for (subject, _, _, count), answer in zip(groups, answers, strict=True):
        reply = await publisher.wait(answer, f"indexing {count} workflows")
        if "error" in reply:
            raise StoreError(
                f"indexing {count} workflows on {subject} failed: {describe(reply)}",
                retryable=True,
            )
        seqs.append(int(reply["seq"]))
    return seqs
