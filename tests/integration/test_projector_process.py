"""The projector in a process of its own, at a lower CPU priority (``projections/yielding.py``).

``jetwork server`` starts it, starts it again when it dies, and leaves none behind even when it is
SIGKILLed; ``jetwork projector`` runs one alone. Real processes, real nats-servers; the views are
read through the client's listing (the projections), not folded from the log.
"""

from __future__ import annotations

import asyncio
import os
import signal
from asyncio.subprocess import DEVNULL, PIPE
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from actors.engine import Engine
from events.connection import NatsSettings, connect
from events.errors import JetworkError
from events.topology import ensure_topology
from sdk.cli.projector_process import ProjectorProcess
from sdk.client import Client
from sdk.embedded_server import EmbeddedServer, free_port
from tests.chaos_processes import clean_env, jetwork
from tests.eventually import assert_eventually
from tests.integration.test_server_orphans import alive

# A job no worker serves: the workflow stays running, its view shows it started.
WAITING = {"name": "waits", "jobs": {"a": {"run": "true", "labels": ["nobody-has-this"]}}}


def _stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state is the first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def niceness(pid: int) -> int:
    return int(_stat(pid)[16])  # field 19 of stat(5)


def projector_children(parent: int) -> list[int]:
    """The live ``jetwork projector`` processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"projector" in command:
            found.append(int(entry.name))
    return found


async def the_projector_of(server: int) -> int:
    pids: list[int] = []

    def one() -> bool:
        pids[:] = projector_children(server)
        return len(pids) == 1

    await assert_eventually(one, timeout=30, message="the server has no projector process")
    return pids[0]


async def listed(client: Client, workflow_id: str) -> None:
    async def seen() -> bool:
        return workflow_id in [row.workflow_id for row in await client.list(limit=100)]

    await assert_eventually(seen, timeout=30, message=f"{workflow_id} never reached the views")


async def ready_url(stderr: asyncio.StreamReader) -> str:
    lines: list[str] = []
    while not any(line.startswith("ready") for line in lines):
        line = (await asyncio.wait_for(stderr.readline(), 60)).decode()
        assert line, "".join(lines)
        lines.append(line)
    return next(line.split(" on ")[1].split()[0] for line in lines if "nats-server on" in line)


async def test_the_server_runs_its_projector_apart_restarts_it_and_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    server = await asyncio.create_subprocess_exec(
        *jetwork("server", "--port", "0", "--data-dir", str(tmp_path / "jw"),
                 "--sync-interval", "2m", "--no-http"),
        stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE, env=clean_env(),
    )  # fmt: skip
    assert server.stderr is not None
    projector = 0
    try:
        url = await ready_url(server.stderr)
        # What it logs from now on is not read: drained so that it never blocks on a full pipe.
        drain = asyncio.create_task(server.stderr.read())
        projector = await the_projector_of(server.pid)
        # (It lowers its priority once connected.)
        await assert_eventually(lambda: niceness(projector) == 10, timeout=30)
        assert niceness(server.pid) < 10

        async with Client.connect(url) as client:
            first = await client.start(WAITING)
            await listed(client, first.workflow_id)

            os.kill(projector, signal.SIGKILL)  # a crash: the server starts another
            await assert_eventually(lambda: not alive(projector), timeout=10)
            projector = await the_projector_of(server.pid)
            await assert_eventually(lambda: niceness(projector) == 10, timeout=30)
            second = await client.start(WAITING)
            await listed(client, second.workflow_id)

        server.kill()  # SIGKILL: it cannot stop its projector; the projector stops by itself
        await server.wait()
        await assert_eventually(
            lambda: not alive(projector), timeout=30, message="the projector outlived its server"
        )
        drain.cancel()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
        if projector and alive(projector):
            os.kill(projector, signal.SIGKILL)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
async def test_the_server_stops_its_projector_when_it_stops(tmp_path: Path, how: str) -> None:
    server = await asyncio.create_subprocess_exec(
        *jetwork("server", "--port", "0", "--data-dir", str(tmp_path / "jw"),
                 "--sync-interval", "2m", "--no-http"),
        stdin=DEVNULL, stdout=DEVNULL, stderr=PIPE, env=clean_env(),
        start_new_session=True,  # a process group of its own, as a terminal gives a command
    )  # fmt: skip
    assert server.stderr is not None
    try:
        await ready_url(server.stderr)
        projector = await the_projector_of(server.pid)
        if how == "SIGTERM":
            server.send_signal(signal.SIGTERM)
        else:  # a terminal's Ctrl-C: SIGINT to every process of the foreground group
            os.killpg(server.pid, signal.SIGINT)
        _, rest = await asyncio.wait_for(server.communicate(), 60)
        assert server.returncode == 0, rest
        assert b"exited: starting another" not in rest  # stopping it is no crash to restart
        assert not alive(projector)
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


async def test_jetwork_projector_alone_projects_at_the_niceness_it_is_given(
    clean_nats: NATS, nats_url: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        *jetwork("projector", "--nats", nats_url),
        stdin=DEVNULL, stdout=PIPE, stderr=PIPE,
        env=clean_env(JETWORK_PROJECTOR_NICE="3"),
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line == b"projector ready\n", line
        assert niceness(process.pid) == max(3, niceness(os.getpid()))
        engine = Engine(clean_nats)  # the starts' events come from an engine (in-process here)
        await engine.start()
        try:
            async with Client.connect(nats_url) as client:
                run = await client.start(WAITING)
                await listed(client, run.workflow_id)
        finally:
            await engine.stop()
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, stderr
        assert b"ready: projector on" in stderr and b"niceness 3" in stderr
        assert b"stopped" in stderr
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("value", "says"),
    [("25", "a niceness from 0 (as it is) to 19"), ("-1", "a niceness from 0"),
     ("1.5", "a whole number"), ("soon", "is not a number")],
)  # fmt: skip
async def test_a_bad_niceness_is_a_one_line_error_before_anything_starts(
    value: str, says: str, tmp_path: Path
) -> None:
    env = clean_env(JETWORK_PROJECTOR_NICE=value)
    server = ("server", "--port", "0", "--data-dir", str(tmp_path))
    for command in (("projector", "--nats", "nats://127.0.0.1:1"), server):
        process = await asyncio.create_subprocess_exec(
            *jetwork(*command), stdin=DEVNULL, stdout=PIPE, stderr=PIPE, env=env
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
        text = stderr.decode()
        assert process.returncode == 1, text
        assert "JETWORK_PROJECTOR_NICE=" in text and value in text and says in text, text
        assert text.count("\n") == 1, text  # one line: nothing was started
    assert not (tmp_path / "nats").exists()  # the server started no nats-server


async def test_a_projector_started_while_nats_is_down_starts_once_it_is_back(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    child = ProjectorProcess(url, auth=None, ready_timeout=120)
    starting = asyncio.create_task(child.start())
    server = EmbeddedServer(data_dir=tmp_path / "nats", port=port, sync_interval="2m")
    try:
        # A first child gave up on the server (its first connection fails fast): another follows.
        await assert_eventually(lambda: child.starts >= 2, timeout=60)
        assert not starting.done()
        server.start()
        nc = await connect(NatsSettings(url=url))
        try:
            await ensure_topology(nc.jetstream())
        finally:
            await nc.close()
        await asyncio.wait_for(starting, 120)
        assert child.pid is not None and niceness(child.pid) == 10
    finally:
        starting.cancel()
        await child.stop()
        server.stop()


async def test_a_projector_that_cannot_start_is_a_clear_error_in_the_end() -> None:
    child = ProjectorProcess("nats://127.0.0.1:1", auth=None, ready_timeout=3)
    with pytest.raises(JetworkError, match="the projector process did not start"):
        await child.start()
    assert child.starts >= 2  # tried again before giving up
    assert child.pid is None
