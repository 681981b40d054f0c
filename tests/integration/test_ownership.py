"""Partition leases (``events/ownership.py``) on a real nats-server: one owner at a time.

Found with three engines started together (the chaos run's start-up): each listed every
partition as free (no key yet), and by the time it came to acquire one that another had just
created, its watcher had delivered that key, so it "took over" the brand-new lease by a CAS
update on its revision, as if it had expired. Two engines then decided for the same workflows
at once, each folding the events it was delivered, and a join decided "not ready" on one
engine's half of the results was never queued. A partition is now judged free again, on the
newest observation, at the moment it is acquired.
"""

from __future__ import annotations

import asyncio
import math

from nats.aio.client import Client as NATS

from events import subjects
from events.connection import NatsSettings, connect
from events.ownership import Ownership
from tests.eventually import assert_eventually

PROCESSES = 3


async def nothing(_: int) -> None:
    return None


def overlap(owners: list[Ownership]) -> set[int]:
    seen: set[int] = set()
    twice: set[int] = set()
    for owner in owners:
        held = set(owner.partitions)
        twice |= seen & held
        seen |= held
    return twice


async def test_processes_started_together_never_hold_a_partition_twice(
    clean_nats: NATS, nats_url: str
) -> None:
    connections = [
        await connect(NatsSettings(url=nats_url, name=f"owner-{i}")) for i in range(PROCESSES)
    ]
    owners = [
        Ownership(nc, f"e{i}", on_gained=nothing, on_lost=nothing, lease_ttl=2.0, renew_every=0.2)
        for i, nc in enumerate(connections)
    ]
    try:
        await asyncio.gather(*(owner.start() for owner in owners))
        share = math.ceil(subjects.PARTITIONS / PROCESSES)
        for _ in range(10):  # ten ownership cycles of every process: never two owners
            await asyncio.gather(*(owner.wait_cycle() for owner in owners))
            assert overlap(owners) == set(), [owner.partitions for owner in owners]

        def balanced() -> bool:
            held = [owner.partitions for owner in owners]
            assert overlap(owners) == set(), held
            assert sorted(p for partitions in held for p in partitions) == list(
                range(subjects.PARTITIONS)
            ), held
            assert all(len(partitions) <= share for partitions in held), held
            return True

        await assert_eventually(balanced, timeout=20)
    finally:
        for owner in owners:
            await owner.stop()
        for nc in connections:
            await nc.close()
