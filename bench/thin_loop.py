"""The thin loop: the thinnest event-sourced job loop on JetStream, the ceiling S1 is held against.

It mirrors ``../shared/calibration/minimal_loop.py``, the calibration the design brief quotes
(≈ 5,300-6,200 no-op jobs/s on this machine), with the same messages and the same concurrency:

- engine: per workflow, CAS-append ``WorkflowStarted`` (expected sequence 0 on ``evt.<wf>.wf.*``)
  and publish a dispatch message on a work queue; 256 starts in flight. It pulls the
  ``JobCompleted`` events (fetch 256) and CAS-appends ``WorkflowCompleted`` for each, then acks.
- worker: fetches dispatch messages (256 at a time); per job CAS-appends ``JobStarted`` and
  ``JobCompleted`` (the no-op ran between them), then acks.

No validation, no projector, no command stream, no labels. What differs from the calibration is
only how it is run: each role is its own process (``python -m bench.thin_loop engine|worker``)
on its own nats-server started exactly as S1's (``bench.stack``: ``nats/server.conf``, the same
sync interval; its own because the calibration's ``evt.>`` overlaps jetwork's events stream),
both stay up for the whole benchmark, and the engine runs a batch of workflows whenever the
benchmark asks (a request on ``thin.run``), so runs alternate with jetwork's and Celery's. CPU
per job is read from ``/proc`` for the engine, the worker and nats-server around each run, and
messages from the server's ``connz``, as for jetwork.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any, Final

import orjson
import uvloop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from bench.report import Result, cpu_per_1k
from bench.stack import Stack

IN_FLIGHT: Final = 256
RUN_SUBJECT: Final = "thin.run"
RUN_TIMEOUT: Final = 180.0
WATCHDOG: Final = 1.5  # seconds a fetch(timeout=1) may take before it is given up


async def _fetch(sub: Any) -> list[Msg]:
    """``fetch(256)`` as the calibration does, behind a watchdog: between runs the loops idle,
    and an idle nats-py fetch loop was seen to stall for good (no pull request left on the
    server, the fetch never returning), which the calibration, never idle, does not meet."""
    try:
        msgs: list[Msg] = await asyncio.wait_for(sub.fetch(IN_FLIGHT, timeout=1), WATCHDOG)
    except (NatsTimeoutError, TimeoutError):
        return []
    return msgs


def _cas(seq: int, filter_subject: str, msg_id: str) -> dict[str, str]:
    return {
        "Nats-Expected-Last-Subject-Sequence": str(seq),
        "Nats-Expected-Last-Subject-Sequence-Subject": filter_subject,
        "Nats-Msg-Id": msg_id,
    }


# --- the engine process ----------------------------------------------------------------------


async def _engine_run(js: JetStreamContext, sub: Any, prefix: str, count: int) -> float:
    """Start ``count`` workflows and wait until each completed; returns the seconds it took."""
    wf_last: dict[str, int] = {}
    limit = asyncio.Semaphore(IN_FLIGHT)
    began = time.perf_counter()

    async def start(i: int) -> None:
        async with limit:
            wf = f"{prefix}w{i}"
            ack = await js.publish(
                f"evt.{wf}.wf.Started",
                orjson.dumps({"type": "WorkflowStarted", "wf": wf, "jobs": ["a"]}),
                headers=_cas(0, f"evt.{wf}.wf.*", f"{wf}-s"),
            )
            wf_last[wf] = ack.seq
            await js.publish("job.any", orjson.dumps({"wf": wf, "job": "a", "run": "noop"}))

    async def react() -> None:
        completed = 0
        while completed < count:
            msgs = await _fetch(sub)

            async def one(m: Msg) -> None:
                wf = orjson.loads(m.data)["wf"]
                await js.publish(
                    f"evt.{wf}.wf.Completed",
                    b'{"type":"WorkflowCompleted"}',
                    headers=_cas(wf_last[wf], f"evt.{wf}.wf.*", f"{wf}-c"),
                )
                await m.ack()

            await asyncio.gather(*(one(m) for m in msgs))
            completed += len(msgs)

    reacting = asyncio.create_task(react())
    await asyncio.gather(*(start(i) for i in range(count)))
    await reacting
    return time.perf_counter() - began


async def _engine(nc: NATS) -> None:
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "evt.*.job.*.Completed",
        durable="engine",
        stream="EVT",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=20_000),
    )
    lock = asyncio.Lock()

    async def on_run(msg: Msg) -> None:
        request = orjson.loads(msg.data)
        async with lock:
            seconds = await _engine_run(js, sub, request["prefix"], int(request["count"]))
        await msg.respond(orjson.dumps({"seconds": seconds}))

    await nc.subscribe(RUN_SUBJECT, cb=on_run)
    await _serve()


# --- the worker process ----------------------------------------------------------------------


async def _worker(nc: NATS) -> None:
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        "job.any",
        durable="workers",
        stream="JOBS",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=20_000),
    )

    async def one(m: Msg) -> None:
        d = orjson.loads(m.data)
        wf, job = d["wf"], d["job"]
        actor = f"evt.{wf}.job.{job}.*"
        ack = await js.publish(
            f"evt.{wf}.job.{job}.Started",
            b'{"type":"JobStarted","attempt":1}',
            headers=_cas(0, actor, f"{wf}-{job}-st1"),
        )
        # the no-op job
        await js.publish(
            f"evt.{wf}.job.{job}.Completed",
            orjson.dumps({"type": "JobCompleted", "wf": wf, "outputs": {}}),
            headers=_cas(ack.seq, actor, f"{wf}-{job}-c1"),
        )
        await m.ack()

    async def pull() -> None:
        while True:
            msgs = await _fetch(sub)
            await asyncio.gather(*(one(m) for m in msgs))

    pulling = asyncio.create_task(pull())
    await _serve()
    pulling.cancel()


async def _serve() -> None:
    """Say ``ready`` and run until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await stop.wait()


async def _role(args: argparse.Namespace) -> None:
    nc = NATS()
    await nc.connect(args.nats, name=args.name, pending_size=256 * 1024 * 1024)
    try:
        await (_engine(nc) if args.role == "engine" else _worker(nc))
    finally:
        await nc.close()


# --- the benchmark's side --------------------------------------------------------------------


class ThinLoop:
    """The thin loop's server, engine and worker, up between ``start`` and ``close``."""

    def __init__(self, *, sync_interval: str) -> None:
        self.sync_interval = sync_interval
        self._stack: Stack | None = None
        self._nc: NATS | None = None
        self._runs = 0

    async def start(self) -> ThinLoop:
        self._stack = stack = Stack(sync_interval=self.sync_interval)
        self._nc = nc = NATS()
        await nc.connect(stack.url, name="thin-driver")
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="EVT", subjects=["evt.>"]))
        await js.add_stream(
            StreamConfig(name="JOBS", subjects=["job.>"], retention=RetentionPolicy.WORK_QUEUE)
        )
        await stack.spawn("worker", "thin-worker", module="bench.thin_loop")
        await stack.spawn("engine", "thin-engine", module="bench.thin_loop")
        return self

    async def run(self, count: int) -> Result:
        """``count`` no-op jobs, one workflow each; jobs/s, CPU and messages per job."""
        assert self._stack is not None and self._nc is not None, "start() first"
        stack = self._stack
        self._runs += 1
        before, msgs_before = self._samples(), stack.server.messages_by_client()
        try:
            reply = await self._nc.request(
                RUN_SUBJECT,
                orjson.dumps({"prefix": f"r{self._runs}", "count": count}),
                timeout=RUN_TIMEOUT,
            )
        except NatsTimeoutError:
            stack.keep = True
            raise RuntimeError(
                f"the thin loop's run of {count:,} jobs did not end within {RUN_TIMEOUT:.0f}s "
                f"(logs: {stack.dir})"
            ) from None
        after, msgs_after = self._samples(), stack.server.messages_by_client()
        seconds = float(orjson.loads(reply.data)["seconds"])
        kinds = {"nats-server": "nats-server", "thin-engine": "engine", "thin-worker": "worker"}
        sent = {
            kinds[name]: round((out - msgs_before.get(name, (0, 0))[0]) / count, 2)
            for name, (out, _) in msgs_after.items()
            if name in kinds
        }
        return Result(
            "S1",
            f"thin loop: {count:,} no-op jobs, {IN_FLIGHT} in flight, sync {self.sync_interval}",
            figures={"jobs/s": round(count / seconds, 1), "seconds": round(seconds, 2)},
            cpu_per_1k_jobs=cpu_per_1k(before, after, kinds, count),
            messages_per_job=sent,
        )

    def _samples(self) -> dict[str, Any]:
        assert self._stack is not None
        return {k: v for k, v in self._stack.samples().items() if k != "driver"}

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None
        if self._stack is not None:
            await self._stack.close()
            self._stack = None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.thin_loop", description=__doc__)
    parser.add_argument("role", choices=("engine", "worker"))
    parser.add_argument("--nats", required=True, help="server URL")
    parser.add_argument("--name", default="thin", help="connection name")
    args = parser.parse_args()
    uvloop.run(_role(args))  # the calibration's loop; the collector left at its defaults, as there


if __name__ == "__main__":
    main()
