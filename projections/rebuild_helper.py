"""A rebuild's helper processes: each projects its share of the partitions into the generation
being built (``projections.rebuild``), so that a rebuild reads and folds on every core.

Parent side: ``help_with`` starts ``python -m projections.rebuild_helper`` for a share and waits
for its statistics. The helper connects as this process does (``JETWORK_NATS_URL`` and the
``JETWORK_NATS_*`` variables of ``events.nats_auth``, set from this process's settings), runs
``Projector.catch_up`` on its partitions and prints one JSON line: what it projected.

A share's views and positions are written exactly as one projector's: several projectors may
share a generation's partitions (the recent lists and the index merge by compare-and-set), and a
helper killed half-way has saved positions only below what it wrote, so its share can be
projected again from there (``rebuild`` does, in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import structlog

from events.connection import NatsSettings, connect
from events.nats_auth import ENV, NatsAuth, process_auth
from projections.projector import Projector, ProjectorSettings

_STDERR_SHOWN = 2000  # characters of a failed helper's output kept for its error


@dataclass(frozen=True, slots=True)
class Share:
    """What one process projected."""

    events: int
    workflows: int


class HelperFailed(Exception):
    """A helper exited without its statistics; ``output`` says why (its last lines)."""

    def __init__(self, partitions: Sequence[int], code: int | None, output: str) -> None:
        super().__init__(
            f"the rebuild helper for partitions {list(partitions)} exited with {code}: {output}"
        )
        self.output = output


async def help_with(
    url: str,
    generation: int,
    partitions: Sequence[int],
    settings: ProjectorSettings,
    *,
    auth: NatsAuth | None = None,
) -> Share:
    """Run a helper over ``partitions``; its statistics, or ``HelperFailed``. Cancelled, the
    helper is killed."""
    env = {**os.environ, "JETWORK_NATS_URL": url, **_auth_variables(auth or process_auth())}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "projections.rebuild_helper",
        "--generation",
        str(generation),
        "--partitions",
        ",".join(map(str, partitions)),
        "--settings",
        orjson.dumps(dataclasses.asdict(settings)).decode(),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled (the rebuild failed elsewhere)
            process.kill()
            await process.wait()
    lines = out.decode(errors="replace").strip().splitlines()
    if process.returncode == 0 and lines:
        try:
            stats = orjson.loads(lines[-1])
            return Share(events=int(stats["events"]), workflows=int(stats["workflows"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            pass
    said = (err.decode(errors="replace").strip() or "no output")[-_STDERR_SHOWN:]
    raise HelperFailed(partitions, process.returncode, said)


def _auth_variables(auth: NatsAuth) -> dict[str, str]:
    return {
        variable: value
        for name, variable in ENV.items()
        if (value := getattr(auth, name)) is not None
    }


# --- the helper process ----------------------------------------------------------------------


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
        prog="python -m projections.rebuild_helper",
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
