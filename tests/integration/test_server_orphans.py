"""Issue 17, part 5: a killed ``jetwork server`` leaves no nats-server behind, and a restart
copes with one left by an older version; never two servers on one store.

Real processes throughout: nats-server itself, a Python process that starts it and is SIGKILLed,
an orphan made the way a killed parent makes one (its parent exits, init adopts it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from events.connection import NatsSettings, connect
from events.errors import ServerUnavailable
from events.store import EventStore
from sdk.client import Client
from sdk.embedded_server import EmbeddedServer, find_nats_server, free_port
from sdk.server_store import PID_FILE, servers_on
from tests.chaos_processes import Managed, clean_env, jetwork
from tests.eventually import assert_eventually
from tests.invariants import check_log

REPO = Path(__file__).resolve().parents[2]
STARTS_A_SERVER = """
import sys, time
from pathlib import Path
from sdk.embedded_server import EmbeddedServer
server = EmbeddedServer(data_dir=Path(sys.argv[1]), sync_interval="2m").start()
print(server.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def orphan_on(store: Path, port: int) -> int:
    """A nats-server on ``store`` whose parent has exited, as an older jetwork left it: no pid
    file, adopted by init. Returns its pid."""
    command, log = _orphan_command(store, port)
    shell = await asyncio.create_subprocess_exec("sh", "-c", command, stdout=PIPE)
    pid = int((await shell.communicate())[0])

    def ready() -> bool:
        return log.exists() and "Server is ready" in log.read_text()

    await assert_eventually(ready, timeout=10, message="the orphan never became ready")
    return pid


def _orphan_command(store: Path, port: int) -> tuple[str, Path]:
    store.mkdir(parents=True, exist_ok=True)
    log = store.resolve() / "orphan.log"
    command = (
        f"'{find_nats_server()}' -js -a 127.0.0.1 -p {port} -sd '{store.resolve()}' "
        f"-l '{log}' </dev/null >/dev/null 2>&1 & echo $!"
    )
    return command, log


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
async def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTS_A_SERVER, str(tmp_path / "nats"), stdout=PIPE, cwd=REPO
    )
    try:
        assert parent.stdout is not None
        server_pid = int(await parent.stdout.readline())
        assert alive(server_pid)
        parent.send_signal(signal.SIGKILL)  # as the OOM killer does: no clean-up runs
        await parent.wait()
        await assert_eventually(
            lambda: not alive(server_pid), timeout=10, message="nats-server outlived its parent"
        )
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()


async def test_an_orphan_of_an_older_version_is_stopped_and_its_port_reused(
    tmp_path: Path,
) -> None:
    store, port = tmp_path / "nats", free_port()
    orphan = await orphan_on(store, port)
    assert not (store / PID_FILE).exists()  # nothing but its command line names the store
    [found] = servers_on(store)
    assert (found.pid, found.owner) == (orphan, None)

    server = EmbeddedServer(data_dir=store, port=port, sync_interval="2m").start()
    try:
        assert server.stopped_orphans == [orphan]
        assert not alive(orphan)
        assert [s.pid for s in servers_on(store)] == [server.pid]
        assert (store / PID_FILE).exists()
    finally:
        server.stop()
    assert not (store / PID_FILE).exists()


async def test_a_live_server_on_the_store_is_never_joined_by_a_second(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    first = EmbeddedServer(data_dir=store, sync_interval="2m").start()
    try:
        with pytest.raises(ServerUnavailable) as caught:
            EmbeddedServer(data_dir=store, sync_interval="2m").start()  # another port
        message = str(caught.value)
        assert f"nats-server (pid {first.pid}) already runs on the store" in message
        assert f"started by process {os.getpid()}" in message
        assert first.running  # left alone
    finally:
        first.stop()


async def test_a_stale_pid_file_of_a_dead_server_is_ignored(tmp_path: Path) -> None:
    store = tmp_path / "nats"
    crashed = EmbeddedServer(data_dir=store, sync_interval="2m").start()
    crashed.kill()  # SIGKILL: its pid file stays behind
    assert (store / PID_FILE).exists()
    again = EmbeddedServer(data_dir=store, sync_interval="2m").start()
    try:
        assert again.stopped_orphans == []
    finally:
        again.stop()


# --- the whole thing, as a user runs it ----------------------------------------------------------

WORKFLOWS = 8
CHAIN = 4


def chain_of_sleeps() -> dict[str, object]:
    jobs: dict[str, object] = {}
    for i in range(CHAIN):
        jobs[f"j{i}"] = {"run": "sleep 0.3", **({"needs": [f"j{i - 1}"]} if i else {})}
    return {"name": "sleepy-chain", "jobs": jobs}


def server_pid(store: Path) -> int:
    return int(orjson.loads((store / PID_FILE).read_bytes())["pid"])


def logged(process: Managed, text: str) -> Callable[[], bool]:
    return lambda: text in process.log.read_text(errors="replace")


@pytest.mark.slow
async def test_a_sigkilled_jetwork_server_restarts_on_its_port_and_store_and_every_workflow_ends(
    tmp_path: Path,
) -> None:
    port, data = free_port(), tmp_path / "jw"
    url = f"nats://127.0.0.1:{port}"
    env = clean_env()
    server = Managed(
        "server",
        lambda _: jetwork("server", "--port", str(port), "--data-dir", str(data),
                          "--sync-interval", "2m"),
        env, tmp_path / "server.log",
    )  # fmt: skip
    worker = Managed(
        "worker",
        lambda _: jetwork("worker", "--nats", url, "-c", "4", "--lease-ttl", "3s",
                          "--heartbeat", "1s", "--poll-interval", "250ms"),
        env, tmp_path / "worker.log",
    )  # fmt: skip
    server.start()
    nc = None
    try:
        await assert_eventually(logged(server, "ready"), timeout=30, message=server.tail())
        worker.start()
        nc = await connect(NatsSettings(url=url, name="orphan-test"))  # reconnects forever
        client, store = Client(nc), EventStore(nc)
        ids = [
            (await client.start(chain_of_sleeps(), idempotency_key=f"orphan-{n}")).workflow_id
            for n in range(WORKFLOWS)
        ]

        async def mid_run() -> bool:
            return len(await store.read_raw("evt.*.*.job.*.JobSucceeded")) >= WORKFLOWS

        await assert_eventually(mid_run, timeout=60, message="no progress before the kill")
        first_server = server_pid(data / "nats")
        done_before = len(await store.read_raw("evt.*.*.job.*.JobSucceeded"))
        server.kill()  # SIGKILL the jetwork server alone, as the OOM killer would
        await assert_eventually(
            lambda: not alive(first_server), timeout=10, message="its nats-server outlived it"
        )
        server.start()  # same port, same data directory
        await assert_eventually(logged(server, "ready"), timeout=30, message=server.tail())
        assert "orphaned" not in server.log.read_text()  # none was left to stop
        assert done_before < WORKFLOWS * CHAIN, "the kill must land mid-run"

        views = [await client.wait(wf, timeout=90) for wf in ids]
        assert [view.status for view in views] == ["succeeded"] * WORKFLOWS
        report = await check_log(store)
        assert report.ok, report.summary()  # among the invariants: no job completed twice
        loaded = await store.read_tolerant("evt.*.*.job.*.JobSucceeded")
        succeeded = Counter((r.event.workflow_id, r.event.job) for r in loaded.events)
        assert set(succeeded.values()) == {1} and len(succeeded) == WORKFLOWS * CHAIN
        worker.note_exit()
        assert worker.alive, worker.tail()  # it rode out the outage
    finally:
        if nc is not None:
            await nc.close()
        worker.stop()
        server.stop()


async def test_jetwork_server_stops_an_old_orphan_and_refuses_to_share_its_store(
    tmp_path: Path,
) -> None:
    port, data = free_port(), tmp_path / "jw"
    orphan = await orphan_on(data / "nats", port)  # an older jetwork server was SIGKILLed
    env = clean_env()
    args = ("server", "--port", str(port), "--data-dir", str(data), "--sync-interval", "2m")
    first = Managed("first", lambda _: jetwork(*args), env, tmp_path / "first.log")
    second = Managed(
        "second",
        lambda _: jetwork("server", "--port", "0", "--data-dir", str(data)),
        env, tmp_path / "second.log",
    )  # fmt: skip
    first.start()
    try:
        await assert_eventually(logged(first, "ready"), timeout=30, message=first.tail())
        assert f"stopped an orphaned nats-server (pid {orphan})" in first.log.read_text()
        assert not alive(orphan)

        second.start()  # the same store, while the first one runs
        await assert_eventually(
            lambda: not second.alive, timeout=30, message="a second server started on the store"
        )
        text = second.log.read_text()
        assert "error: cannot start nats-server: nats-server (pid" in text
        assert "already runs on the store" in text
        first.note_exit()
        assert first.alive, first.tail()
    finally:
        second.stop()
        first.stop()
