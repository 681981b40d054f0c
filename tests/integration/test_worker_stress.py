"""Many short jobs whose length sits around the cancellation check interval: every one must end.

The short version of ``python -m tests.worker_stress`` (see its docstring). On the code before
issue 17 a few of 1,500 jobs stayed `running` for ever: the cancellation of their watcher was
swallowed by ``asyncio.wait_for`` (Python 3.11) inside a direct get.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS

from tests.worker_stress import stress


async def test_every_short_job_ends(clean_nats: NATS, nats_url: str, namespace: str) -> None:
    result = await stress(
        clean_nats, nats_url, workflow_id=namespace, jobs=1500, slots=8, check_interval=0.05,
        deadline=40.0,
    )  # fmt: skip
    assert result.missing == 0, (
        f"{result.missing} of {result.queued} jobs never ended; unfinished tasks:\n"
        f"{result.stuck_tasks}"
    )
