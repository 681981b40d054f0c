"""``python -m projections.rebuild_share``: one helper process of a rebuild
(``projections.rebuild_helper``, which starts it and reads what it prints).

It connects as its parent does (``JETWORK_NATS_URL`` and the ``JETWORK_NATS_*`` variables), runs
``Projector.catch_up`` on the partitions it is given, into the generation being built, and
prints one JSON line: what it projected. Not imported by the package: ``-m`` runs it once.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

import orjson
import structlog

from events.connection import NatsSettings, connect
from projections.projector import Projector, ProjectorSettings
from projections.rebuild_helper import Share


async def _project(generation: int, partitions: list[int], settings: ProjectorSettings) -> Share:
    nc = await connect(NatsSettings.from_env(name="jetwork-rebuild-helper"))
    try:
        projector = Projector(nc, settings=settings, generation=generation)
        try:
            await projector.catch_up(partitions)
        finally:
            await projector.close()
        return Share(events=projector.events_seen, workflows=projector.views_created)
    finally:
        await nc.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m projections.rebuild_share",
        description="Project some partitions into a generation being rebuilt (started by "
        "`jetwork projections rebuild`, not by hand).",
    )
    parser.add_argument("--generation", type=int, required=True)
    parser.add_argument("--partitions", required=True, help="comma-separated, e.g. 1,3,5")
    parser.add_argument("--settings", default="{}", help="ProjectorSettings as JSON")
    args = parser.parse_args(argv)
    partitions = [int(p) for p in args.partitions.split(",") if p]
    settings = ProjectorSettings(**orjson.loads(args.settings))
    # Logs to stderr (the parent shows them if the helper fails); stdout is the statistics.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from sdk.runtime import run_service  # (the helper's loop: uvloop, the tuned collector)

    share = run_service(_project(args.generation, partitions, settings))
    sys.stdout.write(orjson.dumps(dataclasses.asdict(share)).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
