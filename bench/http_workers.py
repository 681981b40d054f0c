"""Plain HTTP workers for the gateway benchmark: no jetwork code, a few lines of HTTP/1.1.

``python -m bench.http_workers jobs --url URL --workers N --stats FILE``: N workers, each on its
own keep-alive connection, claim (long-poll 1 s) and complete no-op jobs until SIGTERM; SIGUSR1
writes what was seen since the last SIGUSR1 (claim latencies of the claims that got a job, the
claims that got none) to FILE as JSON. ``health --seconds S``: N connections calling
``GET /healthz`` for S seconds, then print requests/s (the framework's cost alone).

The client is hand-written on asyncio streams so that its own CPU per request stays small next
to the gateway's on a 2-core machine (a full client library costs several times more).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson


class Connection:
    """One keep-alive HTTP/1.1 connection; JSON bodies with Content-Length only."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status_line = await self._reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length)


class Stats:
    def __init__(self) -> None:
        self.latencies: list[tuple[float, float]] = []  # (when it was sent, seconds)
        self.empty = 0
        self.errors = 0

    def dump(self, path: Path) -> None:
        data = {"latencies": self.latencies, "empty": self.empty, "errors": self.errors}
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data))
        tmp.replace(path)
        self.latencies, self.empty, self.errors = [], 0, 0


async def work(conn: Connection, worker_id: str, stats: Stats, stop: asyncio.Event) -> None:
    claim = orjson.dumps(
        {"worker_id": worker_id, "labels": [], "lease_ttl_secs": 30, "wait_secs": 1}
    )
    while not stop.is_set():
        sent, began = time.time(), time.perf_counter()
        status, body = await conn.request("POST", "/api/jobs/claim", claim)
        took = time.perf_counter() - began
        if status != 200:
            stats.errors += 1
            continue
        if body == b"null":
            stats.empty += 1
            continue
        stats.latencies.append((sent, took))
        lease_id = orjson.loads(body)["lease"]["lease_id"]
        status, _ = await conn.request("POST", f"/api/jobs/{lease_id}/complete", b"{}")
        if status != 200:
            stats.errors += 1


async def jobs(args: argparse.Namespace) -> None:
    host, port = _address(args.url)
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: stats.dump(Path(args.stats)))
    workers = [
        asyncio.create_task(work(Connection(host, port), f"h{i + 1}-{os.getpid()}", stats, stop))
        for i in range(args.workers)
    ]
    print("ready", flush=True)
    await stop.wait()
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)


async def health(args: argparse.Namespace) -> None:
    host, port = _address(args.url)
    counts = [0] * args.workers
    deadline = time.monotonic() + args.seconds

    async def one(index: int) -> None:
        conn = Connection(host, port)
        while time.monotonic() < deadline:
            status, _ = await conn.request("GET", "/healthz")
            assert status == 200
            counts[index] += 1

    began = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(args.workers)))
    seconds = time.monotonic() - began
    result: dict[str, Any] = {"requests": sum(counts), "per_second": sum(counts) / seconds}
    print(orjson.dumps(result).decode(), flush=True)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_workers", description=__doc__)
    parser.add_argument("mode", choices=("jobs", "health"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--stats", default="http-workers.json")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(jobs(args) if args.mode == "jobs" else health(args))


if __name__ == "__main__":
    main()
