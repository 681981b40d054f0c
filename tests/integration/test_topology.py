"""The JetStream topology: created idempotently, with the settings the design depends on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import RetentionPolicy, StorageType

from events import subjects
from events.connection import NatsSettings, connect
from events.errors import StoreError
from events.topology import PARTITIONS_KEY, Topology, ensure_topology, patiently
from sdk.embedded_server import EmbeddedServer
from sdk.worker.pausing import PauseRecord, Pauses, set_pause, worker_key
from tests.cluster import LocalCluster
from tests.eventually import assert_eventually


async def test_ensure_topology_is_idempotent_and_complete(clean_nats: NATS) -> None:
    js = clean_nats.jetstream()
    await ensure_topology(js)
    await ensure_topology(js)
    names = {info.config.name for info in await js.streams_info()}
    expected = {config.name for config in Topology().streams()}
    assert expected <= names
    for bucket in Topology().buckets():
        assert f"KV_{bucket.bucket}" in names


async def test_event_stream_is_the_durable_source_of_truth(clean_nats: NATS) -> None:
    config = (await clean_nats.jetstream().stream_info(subjects.EVENTS_STREAM)).config
    assert config.storage == StorageType.FILE
    assert config.retention == RetentionPolicy.LIMITS
    # No single message is ever deleted; purge is the deletion of an ended workflow behind its
    # tombstone only (docs/reliability.md, "Deleting workflows").
    assert config.deny_delete and not config.deny_purge
    assert config.allow_direct and config.allow_atomic
    assert config.max_age in (0, None) and config.max_msgs in (-1, None)
    assert config.duplicate_window == 120


async def test_changed_settings_are_applied_to_existing_streams(clean_nats: NATS) -> None:
    js = clean_nats.jetstream()
    await ensure_topology(js, Topology(log_max_bytes=123 << 20))
    assert (await js.stream_info(subjects.LOGS_STREAM)).config.max_bytes == 123 << 20
    await ensure_topology(js)
    assert (await js.stream_info(subjects.LOGS_STREAM)).config.max_bytes == 1 << 30


async def test_commands_and_timers_share_a_work_queue(clean_nats: NATS) -> None:
    js = clean_nats.jetstream()
    config = (await js.stream_info(subjects.COMMANDS_STREAM)).config
    assert config.retention == RetentionPolicy.WORK_QUEUE
    assert config.allow_msg_schedules
    assert set(config.subjects or []) == {subjects.COMMANDS_ALL, subjects.TIMER_SCHEDULES_ALL}


async def test_the_partition_count_is_recorded_and_another_one_refused(clean_nats: NATS) -> None:
    js = clean_nats.jetstream()
    info = await js.stream_info(subjects.EVENTS_STREAM)
    assert (info.config.metadata or {})[PARTITIONS_KEY] == str(subjects.PARTITIONS)
    config = info.config
    config.metadata = {**(config.metadata or {}), PARTITIONS_KEY: "3"}
    await js.update_stream(config)
    await js.publish(subjects.workflow_event("w", "WorkflowCancelled"), b"{}")
    with pytest.raises(StoreError, match="written with 3 partitions, this jetwork uses 16"):
        await ensure_topology(js)


@pytest.mark.cluster
async def test_a_process_with_default_settings_keeps_a_cluster_s_replicas(tmp_path: Path) -> None:
    # Every engine and worker runs ensure_topology() with the default (R1) at start-up; on a
    # cluster whose streams were created R3 that must not scale them down.
    with LocalCluster(tmp_path) as cluster:
        nc = await connect(NatsSettings(url=cluster.url, name="topology-r3"))
        try:
            js = nc.jetstream()
            await ensure_topology(js, Topology(replicas=3))
            await ensure_topology(js, Topology(log_max_bytes=123 << 20))
            logs = (await js.stream_info(subjects.LOGS_STREAM)).config
            assert logs.max_bytes == 123 << 20  # other settings are still brought up to date
            for config in Topology().streams():
                info = await js.stream_info(config.name)
                assert info.config.num_replicas == 3, config.name
        finally:
            await nc.close()


async def _through_an_outage(
    server: EmbeddedServer, start: Callable[[], Awaitable[None]]
) -> EmbeddedServer:
    """Stop ``server``, start what ``start`` makes, check that it waits, bring the server back
    (same data, same port) and wait for it to finish: the server running again."""
    server.stop()
    waiting = asyncio.ensure_future(start())
    await asyncio.sleep(1.5)  # the outage itself, not a synchronisation
    assert not waiting.done()
    server = EmbeddedServer(data_dir=server.data_dir, port=server.port, sync_interval="2m").start()
    await asyncio.wait_for(waiting, 30)
    return server


async def test_start_up_waits_for_a_server_that_comes_back(tmp_path: Path) -> None:
    # A process started while JetStream does not answer (a restarting server, a cluster electing
    # leaders) waits for it instead of crashing with a raw nats timeout.
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="2m").start()
    nc = await connect(NatsSettings(url=server.url, name="topology-patience"))
    try:
        server = await _through_an_outage(
            server, lambda: ensure_topology(nc.jetstream(timeout=1), patience=30)
        )
        names = {info.config.name for info in await nc.jetstream().streams_info()}
        assert {config.name for config in Topology().streams()} <= names
    finally:
        await nc.close()
        server.stop()


async def test_start_up_gives_up_with_a_store_error_when_nothing_answers(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="2m").start()
    nc = await connect(NatsSettings(url=server.url, name="topology-no-server"))
    try:
        server.stop()
        with pytest.raises(StoreError, match="JetStream did not answer") as caught:
            await ensure_topology(nc.jetstream(timeout=0.5), patience=1)
        assert caught.value.retryable
    finally:
        with contextlib.suppress(ConnectionError):  # nats-py's close flushes to a dead server
            await nc.close()


async def test_a_worker_s_start_up_steps_wait_for_a_server_that_comes_back(tmp_path: Path) -> None:
    # After the topology a worker opens watches (pauses, rate limits, label sets): a worker
    # restarted while a cluster node is down once exited on a raw nats timeout there (CI,
    # test_chaos_short). Each step is retried, and a step that failed part-way leaves no watch.
    server = EmbeddedServer(data_dir=tmp_path / "nats", sync_interval="2m").start()
    nc = await connect(NatsSettings(url=server.url, name="worker-step-patience"))
    try:
        js = nc.jetstream(timeout=1)
        await ensure_topology(js)
        pauses = Pauses("w1")
        deadline = time.monotonic() + 30
        server = await _through_an_outage(
            server,
            lambda: patiently(lambda: pauses.start(js), deadline, what="reading the worker pauses"),
        )
        await set_pause(js, worker_key("w1"), PauseRecord.now(by="test", reason="outage"))
        await assert_eventually(lambda: pauses.applies_to(None), message="the pause was missed")
        await pauses.stop()
    finally:
        await nc.close()
        server.stop()


async def test_a_start_up_step_gives_up_naming_what_it_was_doing() -> None:
    async def step() -> None:
        raise TimeoutError

    with pytest.raises(StoreError, match="while reading the rate limits") as caught:
        await patiently(step, 0.0, what="reading the rate limits")
    assert caught.value.retryable
