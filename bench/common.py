"""What every scenario needs: a deployment, a connected driver, quiescence, measured windows."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from nats.aio.client import Client as NATS

from bench import profile
from bench.cluster import cluster_servers
from bench.driver import Batch, Driver
from bench.procstat import Sample, load_average
from bench.report import Result, cpu_per_1k, peak_rss
from bench.stack import Stack, single_server
from events import subjects
from events.connection import NatsSettings, connect
from events.topology import Topology, ensure_topology
from projections.generations import Generations
from projections.positions import LagProbe

QUIET_TIMEOUT: Final = 180.0
NOOP: Final[dict[str, Any]] = {"name": "noop", "jobs": {"j": {"uses": "noop"}}}
SHELL_TRUE: Final[dict[str, Any]] = {"name": "true", "jobs": {"j": {"run": "true"}}}


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    slots: int
    labels: str = ""


@dataclass
class Deployment:
    stack: Stack
    nc: NATS
    driver: Driver
    runs: int = 0
    profile_seconds: float = 0.0
    """Sample every role with py-spy for this long during the next measured window (once)."""
    profile_dir: Path | None = None

    def kind_map(self) -> dict[str, str]:
        kinds = dict.fromkeys(self.stack.server.pids(), "nats-server")
        kinds["driver"] = "driver"
        kinds.update({role.name: role.kind for role in self.stack.roles})
        return kinds

    def samples(self) -> dict[str, Sample]:
        return self.stack.samples()

    async def add_worker(self, spec: WorkerSpec, *extra: str) -> None:
        await self.stack.spawn(
            "worker", spec.name, "--slots", str(spec.slots), "--labels", spec.labels, *extra
        )

    def next_prefix(self, what: str) -> str:
        self.runs += 1
        return f"{what}-r{self.runs}"


@asynccontextmanager
async def deployment(
    *,
    sync_interval: str,
    workers: list[WorkerSpec],
    projector: bool = True,
    engine: bool = True,
    role_args: dict[str, list[str]] | None = None,
    cluster: bool = False,
) -> AsyncIterator[Deployment]:
    """Server + engine + projector + workers, each its own process, and a connected driver.

    ``cluster``: on the 3-node cluster of ``nats/cluster/``, streams and buckets with 3 replicas.
    """
    stack = Stack(
        sync_interval=sync_interval, servers=cluster_servers if cluster else single_server
    )
    nc: NATS | None = None
    extra = role_args or {}
    try:
        nc = await connect(NatsSettings(url=stack.url, name="driver"))
        await ensure_topology(nc.jetstream(), Topology(replicas=3 if cluster else 1))
        if engine:
            await stack.spawn("engine", "engine", *extra.get("engine", []))
        if projector:
            await stack.spawn("projector", "projector", *extra.get("projector", []))
        for spec in workers:
            await stack.spawn(
                "worker",
                spec.name,
                "--slots",
                str(spec.slots),
                "--labels",
                spec.labels,
                *extra.get("worker", []),
            )
        driver = Driver(nc)
        await driver.start()
        yield Deployment(stack, nc, driver)
    finally:
        if nc is not None:
            await nc.close()
        await stack.close()


async def quiesce(nc: NATS, *, timeout: float = QUIET_TIMEOUT) -> float:
    """Wait until the engines' consumers hold nothing and the projectors' stored positions cover
    every event (they read without acks: their position is how far they got); returns when
    (epoch)."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = 0
        for stream in (subjects.EVENTS_STREAM, subjects.COMMANDS_STREAM):
            for info in await js.consumers_info(stream):
                if (info.name or "").startswith("engine-"):
                    busy += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        if busy == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise TimeoutError(f"the engines did not catch up within {timeout:.0f}s")
    generations = Generations(nc)
    try:
        generation = (await generations.current()).generation
    finally:
        await generations.close()
    probe = _lag_probes.get(nc)
    if probe is None:  # kept for the connection: each quiesce then scans only what is new
        probe = _lag_probes[nc] = LagProbe(nc)
    while time.monotonic() < deadline:
        if not await probe.lag(generation):
            return time.time()
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the projector did not catch up within {timeout:.0f}s")


_lag_probes: weakref.WeakKeyDictionary[NATS, LagProbe] = weakref.WeakKeyDictionary()


@dataclass
class Window:
    """CPU, memory and NATS message counts between ``open`` and ``close``."""

    dep: Deployment
    before: dict[str, Sample] = field(default_factory=dict)
    after: dict[str, Sample] = field(default_factory=dict)
    msgs_before: dict[str, tuple[int, int]] = field(default_factory=dict)
    msgs_after: dict[str, tuple[int, int]] = field(default_factory=dict)
    load_before: float = 0.0
    profiles: list[profile.Profile] = field(default_factory=list)

    def open(self) -> Window:
        self.load_before = load_average()
        if self.dep.profile_seconds > 0 and self.dep.profile_dir is not None:
            self.profiles = [
                profile.start(role.name, role.pid, self.dep.profile_dir, self.dep.profile_seconds)
                for role in self.dep.stack.roles
                if role.process.returncode is None
            ]
            self.dep.profile_seconds = 0.0  # once
        self.msgs_before = self.dep.stack.server.messages_by_client()
        self.before = self.dep.samples()
        return self

    def close(self) -> None:
        self.after = self.dep.samples()
        self.msgs_after = self.dep.stack.server.messages_by_client()

    def fill(self, result: Result, jobs: int, *, by_process: bool = False) -> Result:
        """The window's figures into ``result``; ``by_process`` also per process, by name."""
        kinds = self.dep.kind_map()
        result.cpu_per_1k_jobs = cpu_per_1k(self.before, self.after, kinds, jobs)
        if by_process:
            names = {name: name for name in self.after}
            result.cpu_per_1k_by_process = cpu_per_1k(self.before, self.after, names, jobs)
        result.peak_rss_mb = peak_rss(self.after, kinds)
        sent: dict[str, float] = {}
        for name, (out, _) in self.msgs_after.items():
            base = self.msgs_before.get(name, (0, 0))[0]
            kind = kinds.get(name.removeprefix("jw-"), name)
            sent[kind] = sent.get(kind, 0.0) + (out - base) / jobs
        result.messages_per_job = {k: round(v, 2) for k, v in sent.items() if v > 0}
        result.notes.append(f"load average before the run: {self.load_before:.2f}")
        for started in self.profiles:
            summary = profile.finish(started)
            if summary is not None:
                result.profiles.append(summary.text())
        return result


async def run_batch(
    dep: Deployment,
    definition: dict[str, Any] | Sequence[dict[str, Any]],
    count: int,
    *,
    what: str,
    timeout: float = 600,
) -> tuple[Batch, float]:
    """Start ``count`` workflows at once, wait for their ends; returns the batch and the quiet
    time (the engine and projector caught up)."""
    prefix = dep.next_prefix(what)
    batch = dep.driver.expect(f"{prefix}-{i}" for i in range(count))
    await dep.driver.submit(batch, definition)
    if not await dep.driver.wait(batch, timeout=timeout):
        raise TimeoutError(f"{len(batch.ended)} of {count} {what} workflows ended in {timeout}s")
    quiet = await quiesce(dep.nc)
    return batch, quiet
