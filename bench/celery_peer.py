"""Celery + Redis measured beside jetwork in the same run: the peer a Python user would pick first.

The peer's own code is ``bench/peers/`` (copied from ``../shared/peers/``: ``celery_app.py``
with Redis as broker and result backend, ``acks_late``, prefetch 64; ``celery_bench.py`` with
the independent, fan-out (chord) and chains scenarios). Here, for the whole benchmark, run:
``redis-server`` on a free loopback port (no persistence), a Celery worker with 2 prefork
processes (``-c 2``; 2 and 4 measured the same here), and for each measured run the peer's bench
script as its own process. CPU per job is read from ``/proc`` around each run: the worker's
process tree, redis-server, and the client (its own figure for the timed part).

It runs when ``redis-server`` is on PATH and a Python that imports ``celery`` and ``redis`` is
found: ``$JETWORK_BENCH_CELERY_PYTHON``, else this interpreter (``pip install -e '.[peers]'``,
which ``make bench`` does), else ``/tmp/celery/bin/python`` (the venv of
``../shared/peers/README.md``). Otherwise the benchmark prints how to enable it and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from bench.procstat import Sample, descendants, sample, tree_sample
from bench.report import Result, cpu_per_1k
from sdk.embedded_server import free_port

PEERS_DIR: Final = Path(__file__).resolve().parent / "peers"
PYTHON_ENV: Final = "JETWORK_BENCH_CELERY_PYTHON"
DEFAULT_VENV_PYTHON: Final = "/tmp/celery/bin/python"
WORKER_PROCESSES: Final = 2
HOW_TO_ENABLE: Final = (
    "to measure Celery beside jetwork: apt-get install redis-server, then "
    "`.venv/bin/pip install -e '.[peers]'` (make bench does) or set "
    f"{PYTHON_ENV} to a Python with celery and redis"
)
_LINE: Final = re.compile(r"jobs=(\d+) seconds=([\d.]+) jobs_per_s=\d+ cpu=([\d.]+)")


def _imports_celery(python: str) -> bool:
    try:
        done = subprocess.run(
            [python, "-c", "import celery, redis"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find() -> tuple[str, str] | str:
    """``(python, redis-server)`` to run the peer with, or why it cannot run."""
    redis = shutil.which("redis-server")
    if redis is None:
        return "Celery not measured: no redis-server on PATH"
    chosen = os.environ.get(PYTHON_ENV)
    candidates = [chosen] if chosen else [sys.executable, DEFAULT_VENV_PYTHON]
    for python in candidates:
        if Path(python).exists() and _imports_celery(python):
            return python, redis
    where = chosen or f"{sys.executable} nor {DEFAULT_VENV_PYTHON}"
    return f"Celery not measured: {where} imports celery and redis"


class CeleryPeer:
    """redis-server and a Celery worker, up between ``start`` and ``close``."""

    def __init__(self, python: str, redis: str) -> None:
        self.python = python
        self._redis_bin = redis
        self._dir = Path(tempfile.mkdtemp(prefix="jetwork-bench-celery-"))
        self._port = free_port()
        self._redis: subprocess.Popen[bytes] | None = None
        self._worker: subprocess.Popen[bytes] | None = None

    @property
    def _env(self) -> dict[str, str]:
        return {**os.environ, "PEER_REDIS": f"redis://127.0.0.1:{self._port}/0"}

    async def start(self) -> CeleryPeer:
        redis = [self._redis_bin, "--port", str(self._port), "--bind", "127.0.0.1"]
        redis += ["--save", "", "--appendonly", "no", "--dir", str(self._dir)]
        # Popen returns at once (ASYNC220 is about waiting); both stay up for the whole run.
        self._redis = subprocess.Popen(  # noqa: ASYNC220
            redis,
            stdin=subprocess.DEVNULL,
            stdout=(self._dir / "redis.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        await self._wait_redis()
        worker = [self.python, "-m", "celery", "-A", "celery_app", "worker"]
        worker += ["-c", str(WORKER_PROCESSES), "--loglevel=warning"]
        self._worker = subprocess.Popen(  # noqa: ASYNC220
            worker,
            cwd=PEERS_DIR,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=(self._dir / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        await self.run("independent", "500", timeout=120)  # warm-up; the worker is up after it
        return self

    async def _wait_redis(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self._port), timeout=1) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout:.0f}s: {self._dir}")

    def _samples(self) -> dict[str, Sample]:
        assert self._redis is not None and self._worker is not None
        return {"worker": tree_sample(self._worker.pid), "redis": sample(self._redis.pid)}

    async def run(self, kind: str, *args: str, timeout: float = 600) -> Result:
        """One run of the peer's bench script: ``independent N``, ``fanout N``, ``chains W L``."""
        before = self._samples()
        client = await asyncio.create_subprocess_exec(
            self.python,
            "celery_bench.py",
            kind,
            *args,
            cwd=PEERS_DIR,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(client.communicate(), timeout)
        except TimeoutError:
            client.kill()
            await client.wait()
            raise RuntimeError(f"Celery's {kind} run did not end within {timeout:.0f}s") from None
        after = self._samples()
        found = _LINE.search(out.decode(errors="replace"))
        if client.returncode != 0 or found is None:
            tail = (out + err).decode(errors="replace").strip().splitlines()[-10:]
            raise RuntimeError(f"Celery's {kind} run failed:\n" + "\n".join(tail))
        jobs, seconds, client_cpu = int(found[1]), float(found[2]), float(found[3])
        kinds = {"worker": "worker", "redis": "redis"}
        cpu = cpu_per_1k(before, after, kinds, jobs)
        cpu["driver"] = round(client_cpu * 1000 / jobs, 3)
        return Result(
            "S1" if kind == "independent" else "S3",
            f"Celery + Redis: {kind} {' x '.join(args)}, -c {WORKER_PROCESSES}",
            figures={"jobs/s": round(jobs / seconds, 1), "seconds": seconds},
            cpu_per_1k_jobs=cpu,
        )

    async def close(self) -> None:
        for process, grace in ((self._worker, 20.0), (self._redis, 10.0)):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)  # Celery: warm shutdown, the pool with it
            try:
                await asyncio.to_thread(process.wait, grace)
            except subprocess.TimeoutExpired:
                for pid in (*descendants(process.pid), process.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.wait()
        self._worker = self._redis = None
        shutil.rmtree(self._dir, ignore_errors=True)
