"""The chaos run: many workflows while engines, workers and a cluster node die at random.

    python -m tests.chaos --workflows 500 --seconds 300

It starts the repo's 3-node JetStream cluster (``tests/cluster.py``, every stream R3), engine
processes (``jetwork server --no-projector``) and worker processes (``jetwork worker``, short
lease) against all three URLs, submits the workflows of ``tests/chaos_workload.py`` in waves, and
for ``--seconds`` injects faults at random moments: SIGKILL of an engine or a worker (started
again a moment later), SIGSTOP of a worker past its job lease or of an engine past its partition
leases (then SIGCONT), and SIGKILL of one
cluster node, preferably the leader of the event stream (started again after a few seconds).
Then every process is brought back, every workflow must end within ``--drain-timeout``, and
``tests/invariants.py`` replays the whole log. Each workflow must also end as its shape says,
and no valid input may land in dead letters.

Everything runs on loopback in a temporary directory (kept, with every process's log, when the
run fails or with ``--keep``); every loop is bounded in count and time; every process is stopped
at the end, on failure and on Ctrl-C. Exit status 0 when nothing was violated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from events import subjects
from events.connection import NatsSettings, connect
from events.dead_letters import list_dead_letters
from events.errors import JetworkError, ServerUnavailable, StoreError
from events.store import EventStore
from events.topology import Topology, ensure_topology
from sdk.client import Client
from tests.chaos_processes import Managed, clean_env, jetwork
from tests.chaos_workload import LABEL, SIGNAL, Planned, plan
from tests.cluster import LocalCluster
from tests.invariants import Report, check_log

_ENDS = ("WorkflowSucceeded", "WorkflowFailed", "WorkflowCancelled")
_START_TIMEOUT = 60.0
_SUBMIT_TRIES = 60


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    workflows: int = 500
    seconds: float = 300.0  # the window in which faults are injected
    submit_share: float = 0.7  # workflows are submitted in waves over this share of the window
    engines: int = 3
    workers: int = 4
    concurrency: int = 8  # jobs at once per worker
    lease: float = 3.0
    heartbeat: float = 1.0
    engine_ack_wait: float = 5.0  # a killed engine's messages go to another after this
    engine_kills: int = 10
    worker_kills: int = 10
    worker_pauses: int = 6
    engine_pauses: int = 4  # SIGSTOP of an engine past its partition leases, then SIGCONT
    engine_lease: float = 4.0  # the engines' partition lease (JETWORK_ENGINE_LEASE_TTL)
    node_kills: int = 1
    between_faults: tuple[float, float] = (2.0, 6.0)
    drain_timeout: float = 240.0
    seed: int | None = None
    directory: Path | None = None
    keep: bool = False
    verbose: bool = True


@dataclass
class ChaosResult:
    config: ChaosConfig
    seed: int
    directory: Path
    report: Report | None = None
    faults: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # beyond the checker's violations
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok and not self.problems

    def summary(self) -> str:
        c = self.config
        faults = ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items())) or "none"
        t = self.timings
        lines = [
            f"chaos run (seed {self.seed}): {c.workflows} workflows of ~10 jobs on a 3-node "
            f"cluster (R3), {c.engines} engines, {c.workers} workers x {c.concurrency} slots, "
            f"lease {c.lease:g}s / heartbeat {c.heartbeat:g}s",
            f"faults: {faults}",
            *(f"  {note}" for note in self.notes),
            f"timing: faults for {t.get('chaos', 0):.0f}s, submitted over "
            f"{t.get('submitted', 0):.0f}s, every workflow ended "
            f"{t.get('drained', math.nan):.1f}s after the fault window; "
            f"total {t.get('total', 0):.0f}s",
            f"log: {self.report.summary() if self.report else 'not checked'}",
        ]
        lines += [f"problem: {p}" for p in self.problems]
        if self.report:
            lines += [str(v) for v in self.report.violations[:30]]
        lines.append("OK: no violation" if self.ok else "FAILED")
        return "\n".join(lines)


async def run_chaos(config: ChaosConfig) -> ChaosResult:
    """Run it; the processes and the cluster are gone when this returns (or raises)."""
    run = _Run(config)
    try:
        await run.execute()
    finally:
        await run.cleanup()
    return run.result


class _Run:
    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        seed = config.seed if config.seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(seed)
        directory = config.directory or Path(tempfile.mkdtemp(prefix="jetwork-chaos-"))
        self.result = ChaosResult(config=config, seed=seed, directory=directory)
        self.cluster = LocalCluster(directory / "cluster")
        self.engines: list[Managed] = []
        self.workers: list[Managed] = []
        self.nc: NATS | None = None
        self.submitted = 0
        self.client_retries = 0
        self.started_at = time.monotonic()

    def say(self, text: str) -> None:
        if self.config.verbose:
            print(f"[{time.monotonic() - self.started_at:6.1f}s] {text}", flush=True)

    # --- the run ---------------------------------------------------------------------------

    async def execute(self) -> None:
        c = self.config
        await self._start_cluster()
        self.nc = nc = await connect(NatsSettings(url=self.cluster.url, name="chaos-driver"))
        for attempt in range(1, 6):  # R3 placement needs every peer known: fresh clusters lag
            try:
                await ensure_topology(nc.jetstream(), Topology(replicas=3))
                break
            except JetworkError:
                if attempt == 5:
                    raise
                await asyncio.sleep(1)
        self._make_processes()
        for process in (*self.engines, *self.workers):
            process.start()
        await self._wait_ready()
        self.say(
            f"cluster, {c.engines} engines and {c.workers} workers up; seed {self.result.seed}"
        )
        plans = [plan(index) for index in range(c.workflows)]
        chaos_from = time.monotonic()
        submitting = asyncio.create_task(self._submit(plans, c.seconds * c.submit_share))
        progress = asyncio.create_task(self._progress(len(plans)))
        try:
            await self._chaos(until=chaos_from + c.seconds)
            self.result.timings["chaos"] = time.monotonic() - chaos_from
            ids = await submitting
        finally:
            progress.cancel()
            submitting.cancel()
        calm_from = time.monotonic()
        await self._restore()
        ended = await self._drain(len(ids), deadline=calm_from + c.drain_timeout)
        if ended < len(ids):
            self.result.problems.append(
                f"timeout: {len(ids) - ended} of {len(ids)} workflows not ended "
                f"{c.drain_timeout:.0f}s after the fault window"
            )
        else:
            self.result.timings["drained"] = time.monotonic() - calm_from
        await self._check(plans, ids)

    async def _start_cluster(self) -> None:
        # tests/cluster.py maps the configs' ports to free ones one by one, so two of them can
        # collide (the node then exits at once): start again on other ports, a few times.
        for attempt in range(1, 4):
            try:
                await asyncio.to_thread(self.cluster.start)
                return
            except RuntimeError:
                await asyncio.to_thread(self.cluster.stop)
                if attempt == 3:
                    raise
                where = self.result.directory / f"cluster-{attempt + 1}"
                self.cluster = LocalCluster(where)

    def _make_processes(self) -> None:
        c, url, logs = self.config, self.cluster.url, self.result.directory / "logs"
        engine_env = clean_env(
            JETWORK_ENGINE_ACK_WAIT=f"{c.engine_ack_wait:g}",
            JETWORK_ENGINE_LEASE_TTL=f"{c.engine_lease:g}",
        )
        worker_env = clean_env(
            JETWORK_WORKER_CANCELLATION_CHECK_INTERVAL="1",
            JETWORK_WORKER_KILL_GRACE="1",
            JETWORK_WORKER_LOG_BATCH_INTERVAL="100ms",
        )
        engine_command = jetwork("server", "--no-projector", "--no-http", "--nats", url)
        for n in range(1, c.engines + 1):
            name = f"engine-{n}"
            log = logs / f"{name}.log"
            self.engines.append(Managed(name, lambda _: engine_command, engine_env, log))

        def worker(name: str) -> Callable[[int], list[str]]:
            return lambda generation: jetwork(
                "worker", "--nats", url, "--id", f"{name}-g{generation}", "--labels", LABEL,
                "--lease-ttl", f"{c.lease:g}s", "--heartbeat", f"{c.heartbeat:g}s",
                "--poll-interval", "250ms", "--concurrency", str(c.concurrency),
            )  # fmt: skip

        for n in range(1, c.workers + 1):
            name = f"worker-{n}"
            self.workers.append(Managed(name, worker(name), worker_env, logs / f"{name}.log"))

    async def _wait_ready(self) -> None:
        assert self.nc is not None
        kv = await self.nc.jetstream().key_value(subjects.KV_WORKERS)

        async def ready(process: Managed) -> bool:
            if process in self.engines:
                return "ready" in process.log.read_text(errors="replace")
            try:
                await kv.get(f"{process.name}-g{process.generation}")
            except KeyNotFoundError:
                return False
            return True

        for process in (*self.engines, *self.workers):
            await _until(ready, process, _START_TIMEOUT)

    # --- load --------------------------------------------------------------------------------

    async def _submit(self, plans: list[Planned], window: float) -> list[str]:
        assert self.nc is not None
        client = Client(self.nc)
        waves = max(1, min(10, len(plans) // 4))
        size = math.ceil(len(plans) / waves)
        began = time.monotonic()
        ids: list[str] = []
        for wave in range(waves):
            chunk = plans[wave * size : (wave + 1) * size]
            ids += await asyncio.gather(*(self._start_one(client, p) for p in chunk))
            self.submitted = len(ids)
            if wave < waves - 1:
                await asyncio.sleep(
                    max(0.0, began + window * (wave + 1) / waves - time.monotonic())
                )
        self.result.timings["submitted"] = time.monotonic() - began
        if self.client_retries:
            self.result.notes.append(
                f"{self.client_retries} start request(s) sent again after a client error"
            )
        return ids

    async def _start_one(self, client: Client, planned: Planned) -> str:
        for attempt in range(1, _SUBMIT_TRIES + 1):
            try:
                handle = await client.start(
                    planned.definition, idempotency_key=planned.idempotency_key
                )
                if planned.shape == "signalled":  # kept if it arrives before the wait starts
                    await client.signal(handle.workflow_id, SIGNAL, {"by": "chaos"},
                                        signal_id=planned.idempotency_key)  # fmt: skip
                return handle.workflow_id
            except (StoreError, ServerUnavailable):
                # A node is down or a leader is being elected; the client calls some of that
                # "no stream answers" (not retryable). The same idempotency key makes a retry
                # the same workflow.
                if attempt == _SUBMIT_TRIES:
                    raise
                self.client_retries += 1
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")

    # --- faults ------------------------------------------------------------------------------

    async def _chaos(self, *, until: float) -> None:
        c = self.config
        budget = Counter(
            engine=c.engine_kills,
            worker=c.worker_kills,
            pause=c.worker_pauses,
            engine_pause=c.engine_pauses,
            node=c.node_kills,
        )
        node_at = time.monotonic() + c.seconds * self.rng.uniform(0.2, 0.5)
        faults: list[asyncio.Task[None]] = []
        while True:
            wait = self.rng.uniform(*c.between_faults)
            if time.monotonic() + wait >= until:
                break
            await asyncio.sleep(wait)  # pacing the load generator, not synchronisation
            if budget["node"] and time.monotonic() >= node_at:
                kind = "node"
            else:
                kinds = [k for k in ("engine", "worker", "pause", "engine_pause") if budget[k] > 0]
                if not kinds:
                    continue
                kind = self.rng.choice(kinds)
            budget[kind] -= 1
            faults.append(asyncio.create_task(self._fault(kind)))
        await asyncio.gather(*faults)

    async def _fault(self, kind: str) -> None:
        rng = self.rng
        if kind == "node":
            await self._kill_node()
            return
        pool = self.engines if kind in ("engine", "engine_pause") else self.workers
        candidates = [p for p in pool if p.alive and not p.paused]
        if not candidates:
            return
        victim = rng.choice(candidates)
        if kind in ("pause", "engine_pause"):
            # Frozen past its lease (a worker's job lease, an engine's partition leases): the
            # others take over, and the resumed process must not write as if nothing happened.
            lease = self.config.lease if kind == "pause" else self.config.engine_lease
            victim.pause()
            self.result.faults[
                f"{'worker' if kind == 'pause' else 'engine'} SIGSTOP past the lease"
            ] += 1
            self.say(f"SIGSTOP {victim.name}")
            await asyncio.sleep(lease + rng.uniform(0.5, 3.0))
            victim.resume()
            self.say(f"SIGCONT {victim.name}")
            return
        victim.kill()
        self.result.faults[f"{kind} SIGKILL"] += 1
        self.say(f"SIGKILL {victim.name}")
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        victim.start()

    async def _kill_node(self) -> None:
        leader = await self._events_leader()
        names = [n.name for n in self.cluster.nodes]
        name = leader if leader in names else self.rng.choice(names)
        node = self.cluster.node(name)
        node.kill()
        killed_at = time.monotonic()
        self.result.faults["node SIGKILL"] += 1
        role = "the JW_EVENTS leader" if name == leader else "not the JW_EVENTS leader"
        self.say(f"SIGKILL node {name} ({role})")
        down = self.rng.uniform(3.0, 8.0)
        await asyncio.sleep(down)
        node.start()
        await asyncio.to_thread(self.cluster.wait_healthy, [node])
        back = time.monotonic() - killed_at
        self.say(f"node {name} healthy again")
        self.result.notes.append(
            f"node {name} ({role}) down {down:.1f}s, healthy after {back:.1f}s"
        )

    async def _events_leader(self) -> str | None:
        assert self.nc is not None
        try:
            info = await self.nc.jetstream(timeout=2).stream_info(subjects.EVENTS_STREAM)
        except Exception:  # no leader right now: any node will do
            return None
        return info.cluster.leader if info.cluster else None

    async def _restore(self) -> None:
        for node in self.cluster.nodes:
            if not node.running:
                node.start()
        await asyncio.to_thread(self.cluster.wait_healthy)
        for process in (*self.engines, *self.workers):
            process.resume()
            if not process.alive:
                process.start()

    # --- waiting and checking ----------------------------------------------------------------

    async def _ended(self) -> int | None:
        assert self.nc is not None
        try:
            messages = await EventStore(self.nc).read_raw("evt.*.*.wf.*")
        except JetworkError:
            return None
        ended = {subjects.workflow_of(m.subject) for m in messages if m.subject.endswith(_ENDS)}
        return len({wf for wf in ended if not wf.startswith("sub-")})  # children not submitted

    async def _progress(self, total: int) -> None:
        while True:
            await asyncio.sleep(15)
            ended = await self._ended()
            faults = sum(self.result.faults.values())
            self.say(f"submitted {self.submitted}/{total}, ended {ended}, faults so far {faults}")

    async def _drain(self, total: int, *, deadline: float) -> int:
        ended = 0
        last_said = time.monotonic()
        while time.monotonic() < deadline:
            ended = await self._ended() or ended
            if ended >= total:
                break
            if time.monotonic() - last_said > 15:
                last_said = time.monotonic()
                self.say(f"waiting: {ended}/{total} workflows ended")
            await asyncio.sleep(0.5)
        self.say(f"{ended}/{total} workflows ended")
        return ended

    async def _check(self, plans: list[Planned], ids: list[str]) -> None:
        assert self.nc is not None
        report = await check_log(EventStore(self.nc), expected=ids)
        self.result.report = report
        for planned, wf in zip(plans, ids, strict=True):
            outcome = report.outcomes.get(wf, "missing")
            if outcome != planned.expected and outcome != "running":  # "running" is reported
                why = f"{planned.shape} ended {outcome}, expected {planned.expected}"
                report.add(wf, None, "expected outcome", why)
        for letter in await list_dead_letters(self.nc, limit=20):
            self.result.problems.append(f"dead letter from {letter.source}: {letter.reason}")
        for process in (*self.engines, *self.workers):
            process.note_exit()
            if process.unexpected_exits:
                self.result.problems.append(
                    f"{process.name} exited by itself (codes {process.unexpected_exits}):\n"
                    f"{process.tail()}"
                )

    async def cleanup(self) -> None:
        processes = [*self.workers, *self.engines]
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in processes))
        if self.nc is not None:
            await self.nc.close()
        await asyncio.to_thread(self.cluster.stop)
        self.result.timings["total"] = time.monotonic() - self.started_at
        if self.result.ok and not self.config.keep:
            shutil.rmtree(self.result.directory, ignore_errors=True)
        else:
            self.result.notes.append(f"logs kept in {self.result.directory}")


async def _until(
    ready: Callable[[Managed], Awaitable[bool]], process: Managed, timeout: float
) -> None:
    """Poll until ``process`` is ready; fail at once if it exited."""
    deadline = time.monotonic() + timeout
    while not await ready(process):
        if time.monotonic() > deadline or not process.alive:
            raise RuntimeError(f"{process.name} not ready within {timeout:g}s:\n{process.tail()}")
        await asyncio.sleep(0.1)


# --- command line ----------------------------------------------------------------------------


def _parse(argv: list[str] | None = None) -> ChaosConfig:
    d = ChaosConfig()
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--workflows", type=int, default=d.workflows)
    p.add_argument("--seconds", type=float, default=d.seconds, help="fault window (seconds)")
    p.add_argument("--engines", type=int, default=d.engines)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="slots per worker")
    p.add_argument("--lease", type=float, default=d.lease, help="worker lease (seconds)")
    p.add_argument("--heartbeat", type=float, default=d.heartbeat)
    p.add_argument("--engine-kills", type=int, default=d.engine_kills)
    p.add_argument("--worker-kills", type=int, default=d.worker_kills)
    p.add_argument("--worker-pauses", type=int, default=d.worker_pauses)
    p.add_argument("--engine-pauses", type=int, default=d.engine_pauses)
    p.add_argument("--node-kills", type=int, choices=(0, 1), default=d.node_kills)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: temporary)")
    p.add_argument("--keep", action="store_true", help="keep the directory and logs")
    a = p.parse_args(argv)
    return ChaosConfig(
        workflows=a.workflows, seconds=a.seconds, engines=a.engines, workers=a.workers,
        concurrency=a.concurrency, lease=a.lease, heartbeat=a.heartbeat,
        engine_kills=a.engine_kills, worker_kills=a.worker_kills, worker_pauses=a.worker_pauses,
        engine_pauses=a.engine_pauses, node_kills=a.node_kills, drain_timeout=a.drain_timeout,
        seed=a.seed, directory=a.dir, keep=a.keep,
    )  # fmt: skip


async def _main(config: ChaosConfig) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    result = await run_chaos(config)
    print(result.summary(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(_main(_parse())))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process was stopped", flush=True)
        raise SystemExit(130) from None
