"""Fixtures: a real nats-server per test session, a clean JetStream topology per test."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from events.connection import NatsSettings, connect
from events.errors import StoreError
from events.tasks import stack_of
from events.topology import ensure_topology
from sdk.embedded_server import EmbeddedServer
from tests.jobs_harness import JobsHarness


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One real JetStream server on a free port with a temporary store, for the whole session.

    Tests use sync_interval 2m for speed; fsync behaviour is covered by the reliability docs.
    """
    server = EmbeddedServer(data_dir=tmp_path_factory.mktemp("nats"), sync_interval="2m")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedServer) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await connect(NatsSettings(url=nats_url, name="jetwork-test"))
    yield client
    await client.close()


@pytest.fixture
async def clean_nats(nc: NATS) -> NATS:
    """A connection to a server whose jetwork streams and buckets were just created afresh.

    Every stream (KV buckets are streams too) is deleted first, so a test sees no event, consumer
    or command left by an earlier test.
    """
    js = nc.jetstream()
    for name in [info.config.name for info in await js.streams_info()]:
        await js.delete_stream(name)
    # nats-server removes a deleted stream's files after it answers; a stream created again at
    # once can find them still there ("error creating store for stream"). Seen once in ~800 tests.
    for attempt in range(1, 6):
        try:
            await ensure_topology(js)
            break
        except StoreError as exc:
            if "error creating store" not in str(exc) or attempt == 5:
                raise
            await asyncio.sleep(0.1 * attempt)
    return nc


@pytest.fixture
def harness(clean_nats: NATS) -> JobsHarness:
    """Queues jobs as the engine would, and reads their job actors back (worker tests)."""
    return JobsHarness(clean_nats)


@pytest.fixture
def namespace() -> str:
    """A unique token for ids in this test (workflow ids, job names) when streams are shared."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a pytest-timeout failure, add what every unfinished asyncio task was awaiting.

    pytest-timeout prints the threads' stacks, and with an idle event loop those only show the
    selector; the await chains of the tasks are what tells where a test hangs.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed or call.excinfo is None:
        return
    if "Timeout" not in str(call.excinfo.value):
        return
    report.sections.append(("unfinished asyncio tasks at the timeout", _unfinished_tasks()))


def _unfinished_tasks() -> str:
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    return "\n".join(stack_of(task) for task in tasks) or "none"
