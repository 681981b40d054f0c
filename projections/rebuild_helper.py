"""A rebuild's helper processes: each projects its share of the partitions into the generation
being built (``projections.rebuild``), so that a rebuild reads and folds on every core.

``help_with`` starts ``python -m projections.rebuild_share`` for a share and waits for its
statistics (that module is the helper process: not imported by the package, so ``-m`` runs it
once). The helper connects as this process does (``JETWORK_NATS_URL`` and the
``JETWORK_NATS_*`` variables of ``events.nats_auth``, set from this process's settings), runs
``Projector.catch_up`` on its partitions and prints one JSON line: what it projected.

A share's views and positions are written exactly as one projector's: several projectors may
share a generation's partitions (the recent lists and the index merge by compare-and-set), and a
helper killed half-way has saved positions only below what it wrote, so its share can be
projected again from there (``rebuild`` does, in its own process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from events.nats_auth import ENV, NatsAuth, process_auth
from projections.projector import ProjectorSettings

_STDERR_SHOWN = 2000  # characters of a failed helper's output kept for its error


@dataclass(frozen=True, slots=True)
class Share:
    """What one process projected."""

    events: int
    workflows: int


class HelperFailed(Exception):
    """A helper exited without its statistics; the message says why (its last output)."""

    def __init__(self, partitions: Sequence[int], code: int | None, output: str) -> None:
        super().__init__(
            f"the rebuild helper for partitions {list(partitions)} exited with {code}: {output}"
        )


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
        "projections.rebuild_share",
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
