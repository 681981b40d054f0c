"""``InProgress``: what a long-running handler returns while the work goes on elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from actors.definitions.durations import parse_duration
from events.subjects import is_valid_token


@dataclass(frozen=True)
class InProgress:
    """Return it from a handler to park the job and be called again later (Conductor's
    in-progress callback)::

        @worker.job("transcode")
        async def transcode(ctx: JobContext, inp: TranscodeIn) -> TranscodeOut | InProgress:
            if ctx.poll_count == 0:
                job_id = await start_remote_transcode(inp)
                return InProgress(callback_after="30s", outputs={"remote_id": job_id})
            state = await remote_state(ctx.progress_outputs["remote_id"])
            if state.done:
                return TranscodeOut(url=state.url)
            pct = {"pct": state.pct}
            return InProgress(callback_after="30s", outputs={**ctx.progress_outputs, **pct})

    The job holds no worker slot and no lease meanwhile: it is recorded ``JobParked`` and, after
    ``callback_after`` (``"30s"``, seconds or a ``timedelta``), queued again for any worker with
    the handler, which runs it with ``ctx.poll_count`` (times parked so far) and
    ``ctx.progress_outputs`` (these ``outputs``, as text like a handler's outputs). Parking uses
    up no attempt.
    """

    callback_after: str | float | timedelta
    outputs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        after = self.callback_after
        seconds = after.total_seconds() if isinstance(after, timedelta) else parse_duration(after)
        object.__setattr__(self, "callback_after", seconds)
        object.__setattr__(self, "outputs", progress_outputs(self.outputs))

    @property
    def seconds(self) -> float:
        """``callback_after`` in seconds."""
        after = self.callback_after
        return after if isinstance(after, float) else float(parse_duration(after))


def progress_outputs(outputs: Mapping[str, Any]) -> dict[str, str]:
    """Outputs as text; raises ``ValueError`` naming a bad key or value."""
    converted: dict[str, str] = {}
    for key, value in outputs.items():
        if not isinstance(key, str) or not is_valid_token(key):
            raise ValueError(f"InProgress output name {key!r} is not a valid name")
        if isinstance(value, str):
            converted[key] = value
        elif isinstance(value, bool | int | float):
            converted[key] = orjson.dumps(value).decode()
        else:
            raise ValueError(
                f"InProgress output {key!r} must be text, a number or a boolean, "
                f"got {type(value).__name__}"
            )
    return converted
