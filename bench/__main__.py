"""``python -m bench [scenario] [--flags]``: jetwork's benchmarks (``make bench`` runs ``all``).

Every scenario starts its own nats-server (temporary directory) and the engine, the projector and
the workers as separate processes (``bench.roles``), warms up, measures, prints a table and writes
``bench/results/<timestamp>.json``. S1 and S3 run beside their peers in the same run, runs
alternating (jetwork, thin loop, Celery, jetwork, ...), and print jetwork's ratio to each with
its target: the thin loop (``bench/thin_loop.py``, the thinnest event-sourced loop on the same
kind of nats-server, its own processes) and Celery + Redis (``bench/celery_peer.py``, when
redis-server and celery are installed; otherwise one line says how to enable it).

  s0      raw nats-py ceiling (sync publish, pipelined publish, fetch+ack) and the event store
  s1      10,000 single-job workflows, no-op Python jobs, 4 worker slots, beside the thin loop
          and Celery (median of 3 at the headline sync interval, 2m; one run at the others, and
          in the best config)
  s2      open-loop arrivals at 50, 500 and 1,000 jobs/s: dispatch and completion latency
  s3      one 1 -> 1,000 -> 1 fan-out/in and 100 chains x 10 jobs beside Celery's chord and
          chains (median of 3), idle hops
  s4      rebuild one 1,000-job workflow's state; rebuild all projections over >= 100k events
  s5      10,000 open workflows: engine RSS, SIGKILL + restart, drain; a kill under load
  logs    job logs end to end: 1,000,000 lines of one job to `jetwork logs`, lines/s
  gateway HTTP workers through the gateway beside the native worker (no engine), /healthz
  cluster S1 (5,000 jobs) on the 3-node R3 cluster of nats/cluster/ with 1, then 2 engine
          processes; CPU per job of every process
  all     everything above (the default)
  worker  the worker side alone (no engine: jobs queued and dispatched by the driver)
  store   the event store micro-benchmark alone (as before)
  fanout_dynamic  one for_each over 10,000 items (--fanout-items), no-op instances: the
          engine's time, CPU and RSS (not in `all`: about a minute)
  priorities  S1 without priorities beside S1 with --priorities (1,5,10) in turn, runs
          alternating: what a label set's priority levels cost (not in `all`)

--quick shrinks every size (2,000 jobs, one run each, no shell jobs or best config, short S2,
a 300-wide fan-out, a 20,000-event rebuild, 100,000 log lines, 1,000 cluster jobs) to check in
two or three minutes that everything works; its figures are rougher (shorter runs, less warm).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import (
    fanout,
    gateway,
    logs,
    priorities,
    recovery,
    scale_out,
    side_by_side,
    store_micro,
    throughput,
    worker_only,
)
from bench import (
    options as command_line,
)
from bench.common import NOOP, SHELL_TRUE, Deployment, WorkerSpec, deployment, run_batch
from bench.procstat import load_average
from bench.report import RESULTS_DIR, Result, median_of, save, table
from bench.side_by_side import Peers
from sdk.runtime import run_service


def _workers(options: argparse.Namespace, slots: int | None = None) -> list[WorkerSpec]:
    per = slots if slots is not None else max(1, options.slots // options.workers)
    return [WorkerSpec(f"w{i + 1}", per) for i in range(options.workers)]


def _role_args(options: argparse.Namespace, tag: str) -> dict[str, list[str]]:
    base = ["--log-level", options.log_level]
    if not options.profile:
        return dict.fromkeys(("engine", "projector", "worker"), base)
    stamp = time.strftime("%H%M%S")
    return {
        kind: [*base, "--profile", f"bench/results/profile-{tag}-{kind}-{stamp}.txt"]
        for kind in ("engine", "projector", "worker")
    }


async def _warm_up(dep: Deployment) -> None:
    await run_batch(dep, NOOP, 1_000, what="warmup")


# --- scenario groups ---------------------------------------------------------------------------


async def s0(options: argparse.Namespace, syncs: list[str]) -> list[Result]:
    results = []
    for sync in syncs:
        figures = await store_micro.run(count=options.count, sync_interval=sync)
        print(store_micro.report(figures, sync_interval=sync), flush=True)
        for figure in figures:
            results.append(
                Result("S0", f"{figure.name}, sync {sync}", figures={figure.unit: figure.rate})
            )
    return results


def _s1_repeats(options: argparse.Namespace, sync: str) -> int:
    return int(options.repeats if sync == options.headline_sync else options.side_repeats)


async def s1(options: argparse.Namespace, sync: str, dep: Deployment, peers: Peers) -> list[Result]:
    slots = f"{options.workers} worker x {options.slots // options.workers} slots"
    headline = sync == options.headline_sync
    results = await side_by_side.s1(
        dep,
        peers,
        jobs=options.jobs,
        repeats=_s1_repeats(options, sync),
        variant=f"{options.jobs:,} no-op jobs, {slots}, sync {sync}",
        thin=headline,
        celery_target=side_by_side.S1_CELERY if headline else side_by_side.S1_CELERY_ALWAYS,
    )
    if options.shell:
        results.append(
            await throughput.independent(
                dep, SHELL_TRUE, options.shell, variant=f"{options.shell:,} shell `true` jobs"
            )
        )
    return results


async def s1_best(options: argparse.Namespace, sync: str) -> list[Result]:
    count, slots = (int(part) for part in options.best.split("x"))
    specs = [WorkerSpec(f"w{i + 1}", slots) for i in range(count)]
    async with deployment(
        sync_interval=sync, workers=specs, role_args=_role_args(options, "best")
    ) as dep:
        await _warm_up(dep)
        variant = f"best config: {count} workers x {slots} slots, sync {sync}"
        runs = [
            await throughput.independent(dep, NOOP, options.jobs, variant=variant)
            for _ in range(options.side_repeats)
        ]
    return [median_of(runs, "jobs/s")]


async def s2(options: argparse.Namespace, dep: Deployment) -> list[Result]:
    rates = [float(rate) for rate in options.rates.split(",") if rate]
    return [
        await throughput.open_loop(dep, NOOP, rate=rate, seconds=options.seconds) for rate in rates
    ]


async def s3(options: argparse.Namespace, dep: Deployment, peers: Peers) -> list[Result]:
    return await side_by_side.s3(dep, peers, width=options.width, repeats=options.repeats)


async def s4(options: argparse.Namespace, dep: Deployment) -> list[Result]:
    batch, _ = await run_batch(dep, throughput.fan_out(options.width), 1, what="s4wf")
    return [
        await recovery.replay_workflow(dep, batch.ids[0]),
        await recovery.rebuild_projections(dep, at_least=options.rebuild_events),
    ]


async def s5(options: argparse.Namespace) -> list[Result]:
    async with deployment(
        sync_interval=options.sync,
        workers=[WorkerSpec("w1", 4)],
        role_args=_role_args(options, "s5"),
    ) as dep:
        await _warm_up(dep)
        results = await recovery.open_workflows(dep, options.jobs)
        results.append(await recovery.kill_under_load(dep, 2_000))
    return results


async def _main(options: argparse.Namespace) -> list[Result]:
    chosen = options.scenario
    results: list[Result] = []

    def want(name: str) -> bool:
        return chosen in ("all", name)

    async def group(name: str, body: Callable[[], Awaitable[list[Result]]]) -> None:
        began = time.monotonic()
        print(f"== {name} (load average {load_average():.2f})", flush=True)
        found = await body()
        results.extend(found)
        print(table(found), flush=True)
        print(f"   ({time.monotonic() - began:.0f} s)\n", flush=True)

    s1_syncs = [sync for sync in options.s1_sync.split(",") if sync]
    if want("s0"):
        await group("S0 ceiling", lambda: s0(options, sorted(set(s1_syncs) | {options.sync})))
    needs_main = [name for name in ("s1", "s2", "s3", "s4") if want(name)]
    with_peers = not options.no_peers and (want("s1") or want("s3"))
    async with side_by_side.peers(
        sync_interval=options.headline_sync,
        thin=with_peers and want("s1"),
        celery=with_peers,
    ) as peers:
        if needs_main:
            async with deployment(
                sync_interval=options.sync,
                workers=_workers(options),
                role_args=_role_args(options, "main"),
            ) as dep:
                await _warm_up(dep)
                dep.profile_seconds = options.py_spy
                dep.profile_dir = RESULTS_DIR / time.strftime("pyspy-%Y%m%d-%H%M%S")
                if want("s1"):
                    await group(
                        f"S1 sync {options.sync}", lambda: s1(options, options.sync, dep, peers)
                    )
                if want("s3"):
                    await group("S3 DAG", lambda: s3(options, dep, peers))
                if want("s2"):
                    await group("S2 latency", lambda: s2(options, dep))
                if want("s4"):
                    await group("S4 replay", lambda: s4(options, dep))
        if want("s1"):
            for sync in s1_syncs:
                if sync == options.sync:
                    continue
                await group(
                    f"S1 sync {sync}",
                    lambda sync=sync: _s1_alone(options, sync, peers),  # type: ignore[misc]
                )
    if want("s1") and options.best:
        await group("S1 best config", lambda: s1_best(options, options.sync))
    if want("s5"):
        await group("S5 scale", lambda: s5(options))
    if want("gateway"):
        await group("G HTTP gateway", lambda: gateway_side(options))
    if want("logs"):
        await group("L logs", lambda: log_rates(options))
    if want("cluster"):
        await group("S1 on the 3-node R3 cluster", lambda: cluster_side(options))
    if chosen == "worker":
        await group("W worker side", lambda: worker_side(options))
    if chosen == "fanout_dynamic":
        await group("F fan-out", lambda: fan_out(options))
    if chosen == "priorities":
        await group("P priorities", lambda: _priorities(options))
    if chosen == "store":
        figures = await store_micro.run(count=options.count, sync_interval=options.sync)
        print(store_micro.report(figures, sync_interval=options.sync))
    return results


async def fan_out(options: argparse.Namespace) -> list[Result]:
    async with deployment(
        sync_interval=options.sync,
        workers=_workers(options),
        role_args=_role_args(options, "F"),
    ) as dep:
        await _warm_up(dep)
        dep.profile_seconds = options.py_spy
        dep.profile_dir = RESULTS_DIR / time.strftime("pyspy-%Y%m%d-%H%M%S")
        results = [
            fanout.actor_only(count, batch=batch)
            for count in sorted({1_000, options.fanout_items})
            for batch in (1, 100)
        ]
        results.append(await fanout.dynamic(dep, options.fanout_items))
        if options.fanout_max_parallel:
            limit = options.fanout_max_parallel
            results.append(await fanout.dynamic(dep, options.fanout_items, max_parallel=limit))
        return results


async def log_rates(options: argparse.Namespace) -> list[Result]:
    async with deployment(
        sync_interval=options.sync,
        workers=[WorkerSpec("w1", 1)],
        role_args=_role_args(options, "L"),
    ) as dep:
        return [
            await logs.log_rate(dep, options.log_lines, writer="seq"),
            await logs.log_rate(dep, max(1, options.log_lines // 5), writer="loop"),
        ]


async def cluster_side(options: argparse.Namespace) -> list[Result]:
    return await scale_out.s1(
        sync=options.sync,
        jobs=options.cluster_jobs,
        repeats=options.side_repeats,
        workers=_workers(options),
        role_args=_role_args(options, "cluster"),
    )


async def _priorities(options: argparse.Namespace) -> list[Result]:
    async with deployment(
        sync_interval=options.sync,
        workers=_workers(options),
        role_args=_role_args(options, "priorities"),
    ) as dep:
        await _warm_up(dep)
        return await priorities.side_by_side(options, dep)


async def worker_side(options: argparse.Namespace) -> list[Result]:
    results = []
    for slots in sorted({options.slots, 64}):
        async with deployment(
            sync_interval=options.sync,
            workers=[WorkerSpec("w1", slots)],
            engine=False,
            projector=False,
            role_args=_role_args(options, "worker"),
        ) as dep:
            await worker_only.drain(dep, 1_000, variant="warm-up")
            dep.profile_seconds = options.py_spy
            dep.profile_dir = RESULTS_DIR / time.strftime("pyspy-%Y%m%d-%H%M%S")
            variant = f"{options.jobs:,} no-op jobs, 1 worker x {slots} slots, sync {options.sync}"
            runs = [
                await worker_only.drain(dep, options.jobs, variant=variant)
                for _ in range(options.repeats)
            ]
            results.append(median_of(runs, "jobs/s"))
    return results


async def gateway_side(options: argparse.Namespace) -> list[Result]:
    return await gateway.compare(
        sync=options.sync,
        jobs=min(options.jobs, options.gateway_jobs),
        slots=options.gateway_workers,
        repeats=options.gateway_repeats,
    )


async def _s1_alone(options: argparse.Namespace, sync: str, peers: Peers) -> list[Result]:
    async with deployment(
        sync_interval=sync, workers=_workers(options), role_args=_role_args(options, sync)
    ) as dep:
        await _warm_up(dep)
        return await s1(argparse.Namespace(**{**vars(options), "shell": 0}), sync, dep, peers)


def _ceiling_notes(results: list[Result]) -> None:
    pipelined = next(
        (
            r.figures["msg/s"]
            for r in results
            if r.scenario == "S0" and r.variant.startswith(store_micro.PIPELINED)
        ),
        None,
    )
    if not pipelined:
        return
    for r in results:
        if r.scenario == "S1" and "jobs/s" in r.figures:
            share = r.figures["jobs/s"] * 4 / pipelined
            r.notes.append(
                f"ceiling ratio: {share:.0%} of the 4-operations-per-job bound "
                f"({pipelined:,.0f} pipelined publishes/s ÷ 4 = {pipelined / 4:,.0f} jobs/s)"
            )


def main() -> None:
    options = command_line.parse(__doc__)
    began = time.monotonic()
    meta: dict[str, Any] = {
        "argv": vars(options),
        "load_average_start": round(load_average(), 2),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    # The driver runs like a service (S4's rebuild runs here, as `jetwork projections rebuild`).
    results = run_service(_main(options))
    if not results:
        return
    _ceiling_notes(results)
    meta["seconds"] = round(time.monotonic() - began, 1)
    meta["load_average_end"] = round(load_average(), 2)
    print("== all results")
    print(table(results))
    ratios = side_by_side.summary(results)
    if ratios:
        print(f"\n== against the peers, same run\n{ratios}")
    print(f"\nwritten to {save(results, meta)} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
