"""The command line of ``python -m bench`` (its help text is ``bench/__main__.py``'s docstring)."""

from __future__ import annotations

import argparse
from typing import Any

SCENARIOS = (
    "all", "s0", "s1", "s2", "s3", "s4", "s5", "gateway", "logs", "cluster", "worker", "store",
    "fanout_dynamic", "priorities",
)  # fmt: skip
# --quick: these sizes replace the defaults (flags given explicitly are kept).
QUICK: dict[str, Any] = {
    "jobs": 2_000,
    "repeats": 1,
    "shell": 0,
    "best": "",
    "width": 300,
    "seconds": 3.0,
    "count": 1_000,
    "gateway_jobs": 1_000,
    "cluster_jobs": 1_000,
    "rebuild_events": 20_000,
    "log_lines": 100_000,
    "fanout_items": 1_000,
}


def parse(description: str | None) -> argparse.Namespace:
    """The command line of ``python -m bench``; ``--quick`` applied."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", nargs="?", default="all", choices=SCENARIOS)
    parser.add_argument(
        "--sync",
        default="2m",
        help="nats-server sync_interval of S2-S5 and of the first S1 figure (the peers run "
        "without an fsync per write either; S1 also runs at `always`, the embedded default)",
    )
    parser.add_argument(
        "--s1-sync", default="2m,always", help="sync intervals S1 runs at (comma-separated)"
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="S1/S5 workflows per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument(
        "--headline-sync",
        default="2m",
        help="the S1 sync interval compared with the target: it gets --repeats runs; S1 at "
        "the other sync intervals and the best config get --side-repeats",
    )
    parser.add_argument(
        "--side-repeats",
        type=int,
        default=1,
        help="runs of the other S1 figures: other sync intervals, best config, cluster (median)",
    )
    parser.add_argument("--slots", type=int, default=4, help="worker slots (S1-S3)")
    parser.add_argument(
        "--priorities", default="1,5,10", help="P: the workflows' priorities, taken in turn"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (S1-S3)")
    parser.add_argument("--shell", type=int, default=1_000, help="S1 shell `true` jobs (0: none)")
    parser.add_argument(
        "--best", default="2x64", help="S1 'best config' workers x slots ('' to skip)"
    )
    parser.add_argument("--width", type=int, default=1_000, help="S3 fan-out width")
    parser.add_argument(
        "--fanout-items", type=int, default=10_000, help="fanout_dynamic: for_each items"
    )
    parser.add_argument(
        "--fanout-max-parallel",
        type=int,
        default=0,
        help="fanout_dynamic: also run with this max_parallel (0: only without)",
    )
    parser.add_argument(
        "--rates",
        default="50,500,1000",
        help="S2 arrival rates (jobs/s; issue 11's target is at 1,000)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="S2 seconds per rate")
    parser.add_argument("--count", type=int, default=3_000, help="S0 operations per run")
    parser.add_argument(
        "--rebuild-events",
        type=int,
        default=100_000,
        help="S4: events in the log before all projections are rebuilt (topped up with S1 jobs)",
    )
    parser.add_argument("--gateway-workers", type=int, default=8, help="G: HTTP workers/slots")
    parser.add_argument("--gateway-jobs", type=int, default=5_000, help="G: jobs per run")
    parser.add_argument("--gateway-repeats", type=int, default=1, help="G: runs per figure")
    parser.add_argument(
        "--log-lines", type=int, default=1_000_000, help="L: lines of the `seq` job (the loop: 1/5)"
    )
    parser.add_argument(
        "--cluster-jobs", type=int, default=5_000, help="cluster: S1 workflows per run"
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="S1/S3 without the thin loop and Celery beside them (jetwork alone)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one run each: a check in 1-2 minutes"
    )
    parser.add_argument("--log-level", default="info", help="roles' log level")
    parser.add_argument("--profile", action="store_true", help="pyinstrument in every role")
    parser.add_argument(
        "--py-spy",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sample every role with py-spy during the first measured S1 run",
    )
    options = parser.parse_args()
    if options.quick:
        for key, value in QUICK.items():
            if getattr(options, key) == parser.get_default(key):
                setattr(options, key, value)
    return options
