"""P: S1 with priorities beside S1 without, in one deployment, runs alternating.

``python -m bench priorities``: no-op single-job workflows (S1's) started at once, first at the
default priority (one consumer, as before priorities existed), then with the workflows'
priorities taken in turn from ``--priorities`` (1,5,10: a third of the jobs on each level, so the
worker pulls the label set as a ``Ladder``). CPU per job of each process, and what the levels cost
(docs/performance.md, "Priorities").
"""

from __future__ import annotations

import argparse
from typing import Any

from bench import throughput
from bench.common import NOOP, Deployment
from bench.report import Result, median_of


def ranked(levels: list[int]) -> list[dict[str, Any]]:
    """S1's workflow at each priority of ``levels`` (taken in turn by the driver)."""
    return [{**NOOP, "priority": level} for level in levels]


async def side_by_side(options: argparse.Namespace, dep: Deployment) -> list[Result]:
    levels = [int(level) for level in options.priorities.split(",") if level]
    plain: list[Result] = []
    mixed: list[Result] = []
    for _ in range(options.repeats):
        plain.append(
            await throughput.independent(
                dep, NOOP, options.jobs, variant=f"{options.jobs:,} no-op jobs, no priority"
            )
        )
        mixed.append(
            await throughput.independent(
                dep,
                ranked(levels),
                options.jobs,
                variant=f"{options.jobs:,} no-op jobs, priorities {options.priorities} in turn",
            )
        )
    return [median_of(plain, "jobs/s"), median_of(mixed, "jobs/s")]
