# ruff: noqa: F811  (the imported fixtures are the tests' parameters)
"""Definitions and schedules under least-privilege roles (events/roles.py): a client registers
and schedules, the engine role's ticker arms ticks and starts runs, a worker may do neither."""

from __future__ import annotations

from actors.scheduler import Ticker
from events import subjects
from sdk.client import Client
from tests.eventually import assert_eventually
from tests.integration.test_roles import ConnectAs, connect_as, secrets  # noqa: F401

TICKING = {"name": "roles-ticking", "jobs": {"a": {"run": "true"}}, "schedule": {"every": "1s"}}


async def test_a_client_schedules_and_the_engines_ticker_starts_runs(
    connect_as: ConnectAs,
) -> None:
    client_role, engine_role = await connect_as("client"), await connect_as("engine")
    client = Client(client_role.nc)
    stored, _ = await client.register_definition(TICKING)
    assert (await client.definition("roles-ticking")).version == stored.version
    await client.add_schedule(TICKING)
    ticker = Ticker(engine_role.nc)
    await ticker.start()
    try:

        async def started() -> str:
            entry = await client.schedule("roles-ticking")
            assert entry.last_run is not None, entry
            return entry.last_run

        run = await assert_eventually(started, timeout=15)
        # The start waits in the commands stream for an engine (none runs here).
        start = await engine_role.nc.jetstream().get_last_msg(
            subjects.COMMANDS_STREAM, subjects.command("start", run)
        )
        assert start.data
        assert await client.pause_schedule("roles-ticking", by="ops") is True
        assert await client.resume_schedule("roles-ticking") is True
        await client.delete_schedule("roles-ticking")
    finally:
        await ticker.stop()
        await client.close()
    assert client_role.refused == [] and engine_role.refused == []
    # Durable timers stay the engine's: a client cannot arm a tick itself.
    await client_role.refuses_publish(subjects.schedule_tick_set("roles-ticking"))


async def test_a_worker_neither_registers_nor_schedules(connect_as: ConnectAs) -> None:
    worker = await connect_as("worker")
    await worker.refuses_publish(f"$KV.{subjects.KV_DEFINITIONS}.x.1")
    await worker.refuses_publish(f"$KV.{subjects.KV_SCHEDULES}.x")
    await worker.refuses_publish(subjects.schedule_arm("x"))
