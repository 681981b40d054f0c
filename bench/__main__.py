"""`python -m bench [store] [--count N] [--sync always|2m]`: run jetwork's benchmarks."""

from __future__ import annotations

import argparse
import asyncio

from bench import store_micro


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", nargs="?", default="store", choices=["store"])
    parser.add_argument("--count", type=int, default=3000, help="operations per scenario run")
    parser.add_argument("--sync", default="2m", help="nats-server sync_interval (always, 2m, ...)")
    args = parser.parse_args()
    figures = asyncio.run(store_micro.run(count=args.count, sync_interval=args.sync))
    print(store_micro.report(figures, sync_interval=args.sync))


if __name__ == "__main__":
    main()
