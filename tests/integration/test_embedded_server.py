"""The embedded nats-server launcher and connection errors, against the real binary."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from events.connection import NatsSettings, connect
from events.errors import ServerUnavailable
from sdk.embedded_server import EmbeddedServer, ServerBinaryNotFound, find_nats_server


def test_the_wheel_binary_is_found() -> None:
    binary = find_nats_server()
    assert binary.name == "nats-server"
    assert binary.is_file()


async def test_starts_with_jetstream_persists_and_stops(tmp_path: Path) -> None:
    server = EmbeddedServer(data_dir=tmp_path / "data", sync_interval="2m").start()
    try:
        nc = await connect(NatsSettings(url=server.url))
        js = nc.jetstream()
        await js.add_stream(name="PERSIST", subjects=["persist.>"])
        await js.publish("persist.one", b"kept")
        await nc.close()
    finally:
        server.stop()
    assert not server.running

    restarted = EmbeddedServer(
        data_dir=tmp_path / "data", port=server.port, sync_interval="2m"
    ).start()
    try:
        nc = await connect(NatsSettings(url=restarted.url))
        msg = await nc.jetstream().get_msg("PERSIST", seq=1)
        assert msg.data == b"kept"
        await nc.close()
    finally:
        restarted.stop()


def test_port_in_use_is_a_clear_error(nats_server: EmbeddedServer, tmp_path: Path) -> None:
    with pytest.raises(
        ServerUnavailable, match=f"port {nats_server.port} on 127.0.0.1 is already in use"
    ):
        EmbeddedServer(data_dir=tmp_path, port=nats_server.port).start()


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        ServerBinaryNotFound, match="cannot run nats-server at /nonexistent/nats-server"
    ):
        EmbeddedServer(data_dir=tmp_path, binary=Path("/nonexistent/nats-server")).start()


def test_server_that_does_not_come_up_shows_its_last_log_lines(tmp_path: Path) -> None:
    # An invalid sync interval makes the real server refuse its configuration.
    server = EmbeddedServer(data_dir=tmp_path, sync_interval="not-a-duration")
    with pytest.raises(ServerUnavailable) as caught:
        server.start()
    message = str(caught.value)
    assert "nats-server exited with code" in message
    assert "Last lines:" in message
    assert "sync" in message.lower()
    assert not server.running


async def test_unreachable_server_fails_fast_with_the_url() -> None:
    started = time.monotonic()
    with pytest.raises(ServerUnavailable, match=r"nats://127\.0\.0\.1:1 .*JETWORK_NATS_URL"):
        await connect(NatsSettings(url="nats://127.0.0.1:1"))
    assert time.monotonic() - started < 5


def test_settings_read_the_environment() -> None:
    assert NatsSettings.from_env({"JETWORK_NATS_URL": "nats://h:1"}).url == "nats://h:1"
    assert NatsSettings.from_env({}, url="nats://x:2").url == "nats://x:2"
    assert NatsSettings.from_env({}).url == "nats://127.0.0.1:4222"
