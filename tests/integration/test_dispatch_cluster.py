"""Dispatch on a 3-node cluster (R3) when several engines react to the same ``JobQueued``.

Every engine that receives a ``JobQueued`` publishes its dispatch (msg-id de-duplication keeps one
message). On a replicated stream a publish whose msg id another publisher is storing right now is
answered "duplicate message id is in process" (10158), and the label set's registration in KV can
read back "not found" from a follower that has not stored another engine's registration yet.
Found by the chaos run: both came back as errors, the engine retried the whole workflow's batch
after a back-off and, after five such deliveries, would have dead-lettered the event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.connection import NatsSettings, connect
from events.dispatch import Dispatcher
from events.topology import Topology, ensure_topology
from tests.cluster import LocalCluster

pytestmark = pytest.mark.cluster

ENGINES = 3
JOBS = 20


@pytest.fixture
async def engines_ncs(tmp_path: Path) -> AsyncIterator[list[NATS]]:
    with LocalCluster(tmp_path) as cluster:
        ncs: list[NATS] = []
        try:  # closed even when the set-up fails: a client left reconnecting hangs the session
            for n in range(ENGINES):
                ncs.append(await connect(NatsSettings(url=cluster.url, name=f"engine-{n}")))
            await ensure_topology(ncs[0].jetstream(), Topology(replicas=3))
            yield ncs
        finally:
            for nc in ncs:
                await nc.close()


async def test_engines_dispatching_one_job_at_once_all_succeed_and_one_message_is_kept(
    engines_ncs: list[NATS],
) -> None:
    dispatchers = [Dispatcher(nc) for nc in engines_ncs]
    for n in range(JOBS):
        results = await asyncio.gather(
            *(
                dispatcher.dispatch(
                    workflow_id="wf-race",
                    job=f"j{n}",
                    attempt=1,
                    labels=["linux"],
                    uses=None,
                    not_before=None,
                    now=datetime.now(UTC),
                )
                for dispatcher in dispatchers
                for _ in range(3)
            ),
            return_exceptions=True,
        )
        assert [r for r in results if r is not None] == [], f"job j{n}"
    js = engines_ncs[0].jetstream()
    assert (await js.stream_info(subjects.JOBS_STREAM)).state.messages == JOBS
    labelsets = await js.key_value(subjects.KV_LABELSETS)
    assert len(await labelsets.keys()) == 1
