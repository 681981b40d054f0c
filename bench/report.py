"""Benchmark results: one ``Result`` per measured run, printed as a table and saved as JSON."""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from bench.procstat import Sample

RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"
KINDS: Final = ("engine", "worker", "projector", "nats-server", "driver")


@dataclass
class Result:
    scenario: str  # "S1", "S2", ...
    variant: str  # what was run
    figures: dict[str, float] = field(default_factory=dict)  # "jobs/s", "ms", "events/s" ...
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    cpu_per_1k_jobs: dict[str, float] = field(default_factory=dict)  # CPU-seconds by kind
    cpu_per_1k_by_process: dict[str, float] = field(default_factory=dict)  # by process name
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # by kind (largest process)
    messages_per_job: dict[str, float] = field(default_factory=dict)  # sent to NATS, by kind
    notes: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)  # py-spy summaries (``--py-spy``)


def percentiles(values_s: Iterable[float]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max of durations given in seconds, in milliseconds."""
    ordered = sorted(v * 1000 for v in values_s)
    if not ordered:
        return {"n": 0}

    def at(q: float) -> float:
        # nearest rank: the smallest value with at least q of the values at or below it
        rank = max(1, math.ceil(q * len(ordered)))
        return round(ordered[rank - 1], 2)

    return {
        "n": len(ordered),
        "p50": at(0.50),
        "p99": at(0.99),
        "p99.9": at(0.999),
        "max": round(ordered[-1], 2),
    }


def kind_of(name: str, kinds: dict[str, str]) -> str:
    return kinds.get(name, name)


def cpu_per_1k(
    before: dict[str, Sample], after: dict[str, Sample], kinds: dict[str, str], jobs: int
) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name, end in after.items():
        start = before.get(name)
        if start is None:
            continue
        kind = kind_of(name, kinds)
        totals[kind] = totals.get(kind, 0.0) + end.cpu - start.cpu
    return {kind: round(seconds * 1000 / jobs, 3) for kind, seconds in totals.items()}


def peak_rss(after: dict[str, Sample], kinds: dict[str, str]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for name, end in after.items():
        kind = kind_of(name, kinds)
        peaks[kind] = max(peaks.get(kind, 0.0), round(end.hwm / 2**20, 1))
    return peaks


def median_of(results: Sequence[Result], figure: str) -> Result:
    """The run whose ``figure`` is the median (every run is kept in the JSON anyway)."""
    ordered = sorted(results, key=lambda r: r.figures.get(figure, 0.0))
    middle = ordered[(len(ordered) - 1) // 2]
    values = ", ".join(f"{r.figures.get(figure, 0.0):,.0f}" for r in results)
    return dataclasses.replace(
        middle,
        variant=f"{middle.variant}, median of {len(results)}",
        notes=[*middle.notes, f"{figure} of each run: {values}"],
    )


def _fmt(value: float | None, width: int, digits: int = 0) -> str:
    if value is None:
        return " " * (width - 1) + "-"
    return f"{value:>{width},.{digits}f}"


def table(results: Sequence[Result]) -> str:
    head = (
        f"{'':4}{'run':<50}{'figure':>16}  {'cpu-s per 1k jobs: eng  wrk  prj nats  drv':<44}"
        f"{'peak MB: eng  wrk  prj':<24}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        main = _main_figure(r)
        cpu = r.cpu_per_1k_jobs
        mem = r.peak_rss_mb
        cpus = "".join(_fmt(cpu.get(k), 5, 2) for k in KINDS)
        mems = "".join(_fmt(mem.get(k), 5) for k in ("engine", "worker", "projector"))
        lines.append(f"{r.scenario:<4}{r.variant[:50]:<50}{main:>16}  {'':19}{cpus}{'':8}{mems}")
        for name, lat in r.latency_ms.items():
            if lat.get("n"):
                lines.append(
                    f"{'':8}{name:<46} p50 {lat['p50']:>8.2f}  p99 {lat['p99']:>8.2f}  "
                    f"p99.9 {lat['p99.9']:>8.2f}  max {lat['max']:>8.2f} ms  (n={lat['n']:.0f})"
                )
        if cpu:
            extra = "".join(f"  {k} {v:.2f}" for k, v in cpu.items() if k not in KINDS)
            lines.append(f"{'':8}CPU ms per job, all processes: {sum(cpu.values()):.2f}{extra}")
        if r.cpu_per_1k_by_process:
            each = "  ".join(f"{k} {v:.2f}" for k, v in r.cpu_per_1k_by_process.items())
            lines.append(f"{'':8}CPU ms per job by process: {each}")
        others = {k: v for k, v in r.figures.items() if k != _main_key(r)}
        if others:
            lines.append(f"{'':8}" + "  ".join(f"{k} {v:,.2f}" for k, v in others.items()))
        if r.messages_per_job:
            sent = "  ".join(f"{k} {v:.1f}" for k, v in r.messages_per_job.items())
            lines.append(f"{'':8}NATS messages sent per job: {sent}")
        lines.extend(f"{'':8}{note}" for note in r.notes)
        for text in r.profiles:
            lines.extend(f"{'':8}{line}" for line in text.splitlines())
    return "\n".join(lines)


_MAIN = ("jobs/s", "events/s", "ms", "seconds")


def _main_key(r: Result) -> str | None:
    return next((k for k in _MAIN if k in r.figures), None)


def _main_figure(r: Result) -> str:
    key = _main_key(r)
    if key is None:
        return ""
    return f"{r.figures[key]:,.0f} {key.split()[0]}"


def save(results: Sequence[Result], meta: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    document = {
        "meta": {
            **meta,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": _cpus(),
        },
        "results": [dataclasses.asdict(r) for r in results],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 0
