"""Progress frames on the command line: ``jetwork logs --progress`` and ``jetwork status``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import orjson
from rich.text import Text

from sdk.client import Client
from sdk.client.progress import ProgressFrame

_SHOWN = 100


async def print_frames(
    client: Client, workflow_id: str, job: str, *, follow: bool, timestamps: bool
) -> None:
    """One line per frame: ``[attempt 1 #3] {"pct":40}``; a summary line after each attempt's
    last frame when not following."""
    async for frame in client.progress(workflow_id, job, follow=follow):
        click.echo(render_frame(frame, timestamps=timestamps))


def render_frame(frame: ProgressFrame, *, timestamps: bool) -> str:
    prefix = frame.time.astimezone().strftime("%H:%M:%S.%f")[:-3] + " " if timestamps else ""
    where = click.style(f"[attempt {frame.attempt} #{frame.seq}]", dim=True)
    return f"{prefix}{where} {compact(frame.frame, limit=None)}"


def summary_lines(summaries: Mapping[str, Mapping[str, Any]]) -> list[Text]:
    """``progress  encode: {"pct":40,"stage":"mux"}``, one line per job that reported any."""
    return [
        Text.assemble(("progress  ", "dim"), (f"{job}: ", "bold"), compact(summary))
        for job, summary in summaries.items()
    ]


def compact(value: Any, *, limit: int | None = _SHOWN) -> str:
    text = orjson.dumps(value).decode()
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
