"""A real nats-server of a test's own, killed and started again under a running worker."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from nats.aio.client import Client as NATS

from events.connection import NatsSettings, connect
from sdk.embedded_server import EmbeddedServer
from sdk.worker import Worker
from tests.eventually import assert_eventually


@contextmanager
def own_server(data_dir: Path) -> Iterator[EmbeddedServer]:
    """A server on a free port with its store in ``data_dir`` (fsync always: a kill loses
    nothing acknowledged), stopped however the test ends."""
    server = EmbeddedServer(data_dir=data_dir, sync_interval="always").start()
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def connected(server: EmbeddedServer) -> AsyncIterator[NATS]:
    """The test's own connection (it reconnects by itself, as the worker's does)."""
    nc = await connect(NatsSettings(url=server.url, name="test-harness"))
    try:
        yield nc
    finally:
        await nc.close()


async def restart_under(
    worker: Worker, server: EmbeddedServer, *, between: Path | None = None
) -> None:
    """Kill the server (SIGKILL) and start it again on the same port; return once the worker
    has reconnected (it listens to cancel notices again: its reconnection hook ran).

    ``between``: a copy of the store (its ``jetstream`` directory) put in place while the
    server is down, as an operator restoring a backup would.
    """
    server.kill()
    await assert_eventually(lambda: worker.revoked.listening_from is None, timeout=10)
    if between is not None:
        restore(between, server.data_dir / "jetstream")
    server.start()  # same port: the worker reconnects
    await assert_eventually(lambda: worker.revoked.listening_from is not None, timeout=15)


def backup(server: EmbeddedServer, to: Path) -> None:
    """Stop the server (gracefully: its store flushed), copy its store, start it again."""
    server.stop()
    restore(server.data_dir / "jetstream", to)
    server.start()


def restore(source: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
