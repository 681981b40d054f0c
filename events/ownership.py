"""Which process owns which partition: leases in KV ``jw_partitions``, fenced and rebalanced.

Engines own partitions of workflows to decide for them, projectors to project them; each kind
(``role``) shares the partitions among its live processes. Keys: ``<role>.p.<n>`` holds the lease
of partition ``n`` (``{"owner", "epoch"}``), ``<role>.e.<id>`` the presence of a live process.
Every ``renew_every`` seconds a process

1. writes its presence, and renews each lease it holds by a CAS update on the key's revision (a
   failed CAS means another engine took the partition: it is given up at once);
2. counts the live engines (presence written within ``lease_ttl``) and aims at its fair share,
   ``ceil(P / engines)``: it gives up partitions beyond it (gracefully: the partition stops, then
   its key is deleted) and takes free or expired ones below it (create, or CAS update with the
   epoch + 1).

A lease is **expired** for an observer once its revision has not changed for ``lease_ttl`` of
the observer's own monotonic clock (no wall clocks compared across machines). The holder stops
deciding for a partition once ``lease_ttl`` has passed since it *sent* its last confirmed renewal
(``holds``), which is always before anyone else can see it expired: an owner frozen past its lease
(SIGSTOP, a long GC, a partitioned network) fences itself before it can append again, and every
append is still conditional on its actor's sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from nats.aio.client import Client as NATS
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from events import subjects

_log = structlog.get_logger("jetwork.ownership")

Callback = Callable[[int], Awaitable[None]]


@dataclass
class _Seen:
    """A key as this engine last saw it, and since when (monotonic) that revision stands."""

    revision: int
    since: float
    value: dict[str, Any]


@dataclass
class _Held:
    revision: int
    epoch: int
    valid_until: float


class Ownership:
    def __init__(
        self,
        nc: NATS,
        process_id: str,
        *,
        role: str = "engine",
        on_gained: Callback,
        on_lost: Callback,
        lease_ttl: float = 4.0,
        renew_every: float = 1.0,
        partitions: int = subjects.PARTITIONS,
    ) -> None:
        self._nc = nc
        self.process_id = process_id
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._ttl = lease_ttl
        self._every = renew_every
        self._partitions = partitions
        self._role = role
        self._kv: KeyValue | None = None
        self._seen: dict[str, _Seen] = {}
        self._held: dict[int, _Held] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._caught_up = asyncio.Event()
        self._stopping = asyncio.Event()
        self._cycled = asyncio.Event()

    # --- keys --------------------------------------------------------------------------------

    def _partition_key(self, partition: int) -> str:
        return f"{self._role}.p.{partition}"

    def _presence_key(self, process_id: str) -> str:
        return f"{self._role}.e.{process_id}"

    @property
    def _presence_prefix(self) -> str:
        return f"{self._role}.e."

    # --- queries ---------------------------------------------------------------------------------

    def holds(self, partition: int) -> bool:
        """True while this engine may decide for ``partition`` (its lease is surely current)."""
        held = self._held.get(partition)
        return held is not None and time.monotonic() < held.valid_until

    @property
    def partitions(self) -> list[int]:
        return sorted(self._held)

    def epoch(self, partition: int) -> int | None:
        held = self._held.get(partition)
        return held.epoch if held else None

    # --- life ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the ownership keys and start cycling; safe to call again after it failed."""
        self._kv = await self._nc.jetstream().key_value(subjects.KV_PARTITIONS)
        watcher = await self._kv.watch(f"{self._role}.>")
        self._tasks = [
            asyncio.create_task(self._watch(watcher)),
            asyncio.create_task(self._cycle_forever()),
        ]

    async def wait_cycle(self) -> None:
        """Wait for the end of the next ownership cycle (tests, start-up)."""
        self._cycled.clear()
        await self._cycled.wait()

    def abandon(self) -> None:
        """Stop renewing and watching, giving nothing up: the leases lapse (tests)."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._held.clear()

    async def stop(self) -> None:
        """Give every partition up (each stopped first, then its key deleted) and stop."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for partition in list(self._held):
            await self._release(partition)
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self._presence_key(self.process_id))

    # --- the watcher -------------------------------------------------------------------------

    async def _watch(self, watcher: KeyValue.KeyWatcher) -> None:
        try:
            async for entry in watcher:
                if entry is None:  # the initial values are all in
                    self._caught_up.set()
                    continue
                if entry.operation in ("DEL", "PURGE") or entry.value is None:
                    self._seen.pop(entry.key, None)
                    continue
                known = self._seen.get(entry.key)
                if known is None or known.revision != entry.revision:
                    try:
                        value = orjson.loads(entry.value)
                    except orjson.JSONDecodeError:
                        value = {}
                    self._seen[entry.key] = _Seen(entry.revision or 0, time.monotonic(), value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    # --- the cycle -----------------------------------------------------------------------------

    async def _cycle_forever(self) -> None:
        await self._caught_up.wait()
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                await self._cycle()
            except Exception as exc:  # the server is away: leases lapse by themselves
                _log.warning("ownership cycle failed", error=str(exc) or type(exc).__name__)
            self._cycled.set()
            await asyncio.sleep(max(0.0, self._every - (time.monotonic() - started)))

    async def _cycle(self) -> None:
        assert self._kv is not None
        await self._kv.put(
            self._presence_key(self.process_id),
            orjson.dumps({"process": self.process_id, "partitions": self.partitions}),
        )
        for partition in list(self._held):
            await self._renew(partition)
        share = math.ceil(self._partitions / self._live_engines())
        for partition in sorted(self._held, reverse=True)[: max(0, len(self._held) - share)]:
            await self._release(partition)
        for partition in self._free():
            if len(self._held) >= share:
                break
            await self._acquire(partition)
        await self._forget_dead_engines()

    async def _forget_dead_engines(self) -> None:
        """Delete presence entries silent for ten leases (engines that died without leaving)."""
        assert self._kv is not None
        now = time.monotonic()
        for key, seen in list(self._seen.items()):
            if key.startswith(self._presence_prefix) and now - seen.since > 10 * self._ttl:
                with contextlib.suppress(Exception):
                    await self._kv.delete(key, last=seen.revision)

    def _live_engines(self) -> int:
        now = time.monotonic()
        live = {
            key
            for key, seen in self._seen.items()
            if key.startswith(self._presence_prefix) and now - seen.since < self._ttl
        }
        live.add(self._presence_key(self.process_id))
        return len(live)

    def _free(self) -> list[int]:
        """Partitions nobody holds: no key, or a revision unchanged for a whole lease."""
        return [
            partition
            for partition in range(self._partitions)
            if partition not in self._held and self._is_free(partition)
        ]

    def _is_free(self, partition: int) -> bool:
        seen = self._seen.get(self._partition_key(partition))
        return seen is None or time.monotonic() - seen.since >= self._ttl

    async def _renew(self, partition: int) -> None:
        assert self._kv is not None
        held = self._held[partition]
        sent = time.monotonic()
        value = orjson.dumps({"owner": self.process_id, "epoch": held.epoch})
        try:
            key = self._partition_key(partition)
            revision = await self._kv.update(key, value, last=held.revision)
        except KeyWrongLastSequenceError:
            _log.warning("partition taken over by another process", partition=partition)
            await self._lose(partition)
            return
        except Exception as exc:  # no answer: the lease runs out unless a later renewal lands
            _log.warning("lease renewal failed", partition=partition, error=repr(exc))
            return
        held.revision, held.valid_until = revision, sent + self._ttl

    async def _acquire(self, partition: int) -> None:
        assert self._kv is not None
        key = self._partition_key(partition)
        # Judged again now, on the newest observation: another process may have taken the
        # partition since the list of free ones was made (its create is a fresh lease, not an
        # expired one to take over; taking it would give the partition two owners at once).
        if not self._is_free(partition):
            return
        seen = self._seen.get(key)
        epoch = int(seen.value.get("epoch", 0)) + 1 if seen else 1
        value = orjson.dumps({"owner": self.process_id, "epoch": epoch})
        sent = time.monotonic()
        try:
            if seen is None:
                revision = await self._kv.create(key, value)
            else:
                revision = await self._kv.update(key, value, last=seen.revision)
        except Exception as exc:  # another engine was quicker, or no answer: look again later
            _log.debug("partition not acquired", partition=partition, error=repr(exc))
            return
        self._held[partition] = _Held(revision, epoch, sent + self._ttl)
        _log.debug("partition acquired", role=self._role, partition=partition, epoch=epoch)
        try:
            await self._on_gained(partition)
        except Exception:
            _log.exception("could not take up partition", partition=partition)
            await self._release(partition)

    async def _release(self, partition: int) -> None:
        held = self._held.get(partition)
        await self._lose(partition)
        if held is None or self._kv is None:
            return
        with contextlib.suppress(Exception):  # deleting lets the others take it at once
            await self._kv.delete(self._partition_key(partition), last=held.revision)
        _log.debug("partition released", partition=partition)

    async def _lose(self, partition: int) -> None:
        if self._held.pop(partition, None) is None:
            return
        try:
            await self._on_lost(partition)
        except Exception:
            _log.exception("could not give up partition cleanly", partition=partition)
