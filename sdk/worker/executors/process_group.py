"""Stopping a job's whole process tree: the job runs as the leader of its own process group."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process remains in group ``pgid``.

    Zombies count as gone: orphans are reaped by init, which may be slow or, in some containers,
    never happen, and a zombie holds no pipe and does no work.
    """
    if not signal_group(pgid, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


async def stop_process_group(
    pgid: int, leader_exited: asyncio.Future[None], *, grace: float
) -> None:
    """SIGTERM process group ``pgid``; SIGKILL what is left after ``grace`` seconds.

    Returns once the leader has exited and no live process remains in the group (or, after
    SIGKILL, once the leader is reaped).
    """
    if not signal_group(pgid, signal.SIGTERM):
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if leader_exited.done() and not group_alive(pgid):
            return
        await asyncio.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)
    await asyncio.wait([leader_exited], timeout=1.0)
