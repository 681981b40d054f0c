"""The HTTP gateway on loopback against the test's nats-server, with an in-process engine, and
small helpers to speak to it over real HTTP (httpx)."""

from __future__ import annotations

import contextlib
import fcntl
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine, EngineSettings
from events.base import RecordedEvent
from events.store import EventStore
from gateway.serve import HttpGateway
from gateway.settings import GatewaySettings
from tests.engine_harness import ended
from tests.eventually import assert_eventually

SEED_PORT = 3000
"""The seed's Python and Go workers talk to http://localhost:3000, hard-coded."""


@contextlib.asynccontextmanager
async def running_engine(nc: NATS) -> AsyncIterator[Engine]:
    engine = Engine(nc, settings=EngineSettings(ack_wait=5.0, poll_interval=0.2))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@contextlib.asynccontextmanager
async def running_gateway(
    nats_url: str, settings: GatewaySettings | None = None
) -> AsyncIterator[HttpGateway]:
    gateway = HttpGateway(settings or GatewaySettings(port=0), nats_url=nats_url)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@contextlib.contextmanager
def seed_port() -> Iterator[None]:
    """Hold port 3000 for this test (a lock file orders test runs of several checkouts on one
    machine); fail, saying so, when another program serves it (a skip would prove nothing)."""
    lock_path = Path("/tmp/jetwork-test-http-3000.lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", SEED_PORT))
        except OSError:
            pytest.fail(
                "port 3000 is taken by another program (a `jetwork server` left running?): "
                "the seed's Python and Go workers talk to http://localhost:3000 and cannot be "
                "pointed elsewhere; stop it and run the test again"
            )
        finally:
            probe.close()
        yield


async def claim(
    http: httpx.AsyncClient,
    worker_id: str,
    labels: list[str] | None = None,
    *,
    ttl: float = 30,
    wait: float = 0,
    **extra: Any,
) -> Any:
    body = {"worker_id": worker_id, "labels": labels or [], "lease_ttl_secs": ttl, **extra}
    if wait:
        body["wait_secs"] = wait
    response = await http.post("/api/jobs/claim", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def claim_eventually(
    http: httpx.AsyncClient, worker_id: str, labels: list[str] | None = None, **kw: Any
) -> Any:
    async def probe() -> Any:
        return await claim(http, worker_id, labels, **kw)

    return await assert_eventually(probe, timeout=15, message=f"{worker_id} got no job")


async def start(http: httpx.AsyncClient, workflow: dict[str, Any], **body: Any) -> str:
    response = await http.post("/api/workflows", json={"workflow": workflow, **body})
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["workflow_id"]
    return workflow_id


async def finished(store: EventStore, wf: str, timeout: float = 30) -> list[RecordedEvent]:
    async def probe() -> list[RecordedEvent] | None:
        history = await store.history(wf)
        return history if ended(history) else None

    found: list[RecordedEvent] = await assert_eventually(
        probe, timeout=timeout, message=f"workflow {wf} never ended"
    )
    return found


def types_of(history: list[RecordedEvent], job: str | None = None) -> list[str]:
    return [
        r.event.event_type for r in history if job is None or getattr(r.event, "job", None) == job
    ]
