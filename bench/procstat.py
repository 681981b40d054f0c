"""CPU time and memory of a process, read from ``/proc`` (Linux).

CPU is ``utime + stime`` of ``/proc/<pid>/stat`` (user + system seconds, this process only);
memory is ``VmRSS`` (now) and ``VmHWM`` (the peak resident set since the process started) of
``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

_TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sample:
    cpu: float  # seconds of CPU (user + system) since the process started
    rss: int  # bytes resident now
    hwm: int  # bytes resident at the peak so far


def sample(pid: int) -> Sample:
    """The process's CPU seconds and memory now; zeros when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode()
        with open(f"/proc/{pid}/status", "rb") as handle:
            status = handle.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return Sample(0.0, 0, 0)
    # Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    memory = {"VmRSS": 0, "VmHWM": 0}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in memory:
            memory[key] = int(value.split()[0]) * 1024  # kB
    return Sample(cpu, memory["VmRSS"], memory["VmHWM"])


def load_average() -> float:
    """The 1-minute load average (the machine is shared: say how busy it was)."""
    return os.getloadavg()[0]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read().decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid
        parents.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


def tree_sample(pid: int) -> Sample:
    """CPU of ``pid`` and every live process below it, summed; memory of the largest."""
    samples = [sample(p) for p in (pid, *descendants(pid))]
    return Sample(
        sum(s.cpu for s in samples),
        max((s.rss for s in samples), default=0),
        max((s.hwm for s in samples), default=0),
    )
