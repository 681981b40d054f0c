"""A job's processes: stopping its whole tree (the job runs as the leader of its own process
group), and hearing that it exited."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Final

import structlog

_log = structlog.get_logger("jetwork.worker")


LIVE_GROUPS: set[int] = set()
"""Process groups of the jobs this process started and has not stopped yet (process-wide, like
the children themselves): what a hard exit must kill on its way out."""


def kill_live_groups() -> None:
    """SIGKILL every job process group still alive (``HardExit``)."""
    for pgid in list(LIVE_GROUPS):
        signal_group(pgid, signal.SIGKILL)


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


EXIT_PROBE_EVERY: Final = 1.0
"""Seconds between two looks at a job's process (is it still running?)."""
EXIT_REPORT_GRACE: Final = 2.0
"""Seconds an exit may go unreported by the event loop before the probe takes it itself."""


class ExitProbe:
    """Makes sure the exit of a job's process is heard, even if the event loop never reports it.

    Every ``EXIT_PROBE_EVERY`` seconds until ``exited`` resolves it asks the kernel whether
    ``pid`` has exited with ``waitid(WNOWAIT)``, which does not reap it (asyncio's child watcher,
    or uvloop, still does, and reports the exit). An exit still unreported ``EXIT_REPORT_GRACE``
    seconds after the probe saw it is logged as an error; the probe then reaps the process
    itself (``returncode``, or None if someone else reaped it) and resolves ``exited``.
    """

    def __init__(self, pid: int, exited: asyncio.Future[None], *, job: str) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = exited
        self._job = job
        self._seen_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            EXIT_PROBE_EVERY, self._look
        )

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        self._timer = None
        if self._exited.done():
            return
        now = self._loop.time()
        if self._seen_at is None:
            if not self._has_exited():
                self._timer = self._loop.call_later(EXIT_PROBE_EVERY, self._look)
                return
            self._seen_at = now
        if now - self._seen_at < EXIT_REPORT_GRACE:
            self._timer = self._loop.call_later(self._seen_at + EXIT_REPORT_GRACE - now, self._look)
            return
        self.returncode = self._reap()
        _log.error(
            "a job's process exited but the event loop never reported it: taking its exit "
            "from the kernel",
            job=self._job,
            pid=self.pid,
            unreported_for=round(now - self._seen_at, 1),
            returncode=self.returncode,
        )
        self._exited.set_result(None)

    def _has_exited(self) -> bool:
        try:
            found = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True  # already reaped by someone: the exit happened
        except OSError:
            return False
        return found is not None

    def _reap(self) -> int | None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None
        return os.waitstatus_to_exitcode(status) if pid else None
