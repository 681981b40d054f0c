"""The 3-node R3 cluster of ``nats/cluster/`` for the benchmark, and who owns its partitions.

The nodes are the repository's own configs made runnable side by side by the test suite's
``tests.cluster.derive_configs`` (free loopback ports, a temporary store); the benchmark adds the
sync interval it measures at and, like ``bench.stack.Server``, the monitoring endpoint it reads
message counts from. Every client is given all three URLs, as ``JETWORK_NATS_URL`` would hold
them; the streams and buckets are created with three replicas before any role starts.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from nats.aio.client import Client as NATS

from bench.stack import READY_TIMEOUT, server_duration
from events import subjects
from sdk.embedded_server import find_nats_server
from tests.cluster import NODE_CONFIGS, derive_configs

_CLIENT_LISTEN: Final = re.compile(r"^listen:\s*127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)
_MONITOR: Final = re.compile(r"^http:\s*127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)
BALANCE_TIMEOUT: Final = 60.0


@dataclass
class _Node:
    name: str
    config: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return int(_search(_CLIENT_LISTEN, self.config))

    @property
    def monitor_port(self) -> int:
        return int(_search(_MONITOR, self.config))

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "server.conf"
        config.write_text(self.config)
        log = self.directory / "nats-server.log"
        self.process = subprocess.Popen(
            [str(find_nats_server()), "-c", str(config), "-l", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.monitor_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

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


@dataclass
class ClusterServers:
    """Three nats-server processes forming the cluster; what ``bench.stack.Stack`` runs on."""

    directory: Path
    sync_interval: str
    nodes: list[_Node] = field(default_factory=list)

    def start(self) -> ClusterServers:
        configs = derive_configs(
            NODE_CONFIGS,
            self.directory / "store",
            sync_interval=server_duration(self.sync_interval),
        )
        self.nodes = [
            _Node(f"nats-n{index}", config, self.directory / f"n{index}")
            for index, config in enumerate(configs, start=1)
        ]
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(node.healthy() for node in self.nodes):
            for node in self.nodes:
                if node.process is None or node.process.poll() is not None:
                    raise RuntimeError(f"{node.name} exited: see {node.directory}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster was not healthy within {READY_TIMEOUT:.0f}s")
            time.sleep(0.1)
        return self

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{node.port}" for node in self.nodes)

    def pids(self) -> dict[str, int]:
        return {node.name: node.process.pid for node in self.nodes if node.process is not None}

    def messages_by_client(self) -> dict[str, tuple[int, int]]:
        """``{connection name: (sent, received)}`` over the three nodes' client connections."""
        counts: dict[str, tuple[int, int]] = {}
        for node in self.nodes:
            url = f"http://127.0.0.1:{node.monitor_port}/connz?limit=1000"
            with urllib.request.urlopen(url, timeout=5) as reply:
                found: dict[str, Any] = json.loads(reply.read())
            for conn in found.get("connections", []):
                name = conn.get("name") or f"cid-{conn.get('cid')}"
                sent, received = counts.get(name, (0, 0))
                counts[name] = (sent + conn.get("in_msgs", 0), received + conn.get("out_msgs", 0))
        return counts

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def cluster_servers(directory: Path, sync_interval: str) -> ClusterServers:
    """The cluster of a ``bench.stack.Stack``, started."""
    return ClusterServers(directory / "cluster", sync_interval).start()


async def partition_owners(nc: NATS, role: str = "engine") -> dict[str, int]:
    """``{owner: partitions held}`` of ``role`` from the leases in KV ``jw_partitions``."""
    kv = await nc.jetstream().key_value(subjects.KV_PARTITIONS)
    try:
        keys = await kv.keys()
    except Exception:  # nats-py raises NoKeysError on an empty bucket
        return {}
    owners: dict[str, int] = {}
    for key in keys:
        if not key.startswith(f"{role}.p."):
            continue
        try:
            entry = await kv.get(key)
        except Exception:  # given up between the listing and the read
            continue
        if not entry.value:
            continue
        owner = str(orjson.loads(entry.value).get("owner", ""))
        owners[owner] = owners.get(owner, 0) + 1
    return owners


async def wait_balanced(nc: NATS, processes: int, *, role: str = "engine") -> dict[str, int]:
    """Wait until ``processes`` processes of ``role`` each hold their fair share of the
    partitions (every partition held); returns the owners' counts."""
    share = -(-subjects.PARTITIONS // processes)
    deadline = time.monotonic() + BALANCE_TIMEOUT
    owners: dict[str, int] = {}
    while time.monotonic() < deadline:
        owners = await partition_owners(nc, role)
        held = sum(owners.values())
        if (
            len(owners) == processes
            and held == subjects.PARTITIONS
            and max(owners.values()) <= share
        ):
            return owners
        await asyncio.sleep(0.2)
    raise TimeoutError(
        f"{processes} {role} processes did not share the {subjects.PARTITIONS} partitions "
        f"within {BALANCE_TIMEOUT:.0f}s: {owners}"
    )


def _search(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"no {pattern.pattern!r} in the node config")
    return match.group(1)
