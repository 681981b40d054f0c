"""py-spy sampling of role processes during a measured run, and a summary of what it saw.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); the summary
gives, per process, the functions with the most samples on top of the stack (self) and anywhere
in it (inclusive), as shares of all samples. Idle samples (the event loop waiting in
``select``/``epoll``) are counted apart so that the shares are of busy time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_IDLE_MARKERS = ("select (selectors.py", "_run_once", "run_forever")


@dataclass
class Profile:
    name: str
    path: Path
    process: subprocess.Popen[bytes]


@dataclass
class Summary:
    name: str
    samples: int
    idle: int
    top_self: list[tuple[str, float]] = field(default_factory=list)
    top_inclusive: list[tuple[str, float]] = field(default_factory=list)

    def text(self) -> str:
        busy = self.samples - self.idle
        lines = [f"{self.name}: {self.samples} samples, {busy} busy"]
        lines.append("  self (share of busy samples):")
        lines += [f"    {share:6.1%}  {frame}" for frame, share in self.top_self]
        lines.append("  inclusive:")
        lines += [f"    {share:6.1%}  {frame}" for frame, share in self.top_inclusive]
        return "\n".join(lines)


def py_spy() -> str:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else (shutil.which("py-spy") or "py-spy")


def start(name: str, pid: int, out_dir: Path, seconds: float, *, native: bool = False) -> Profile:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"pyspy-{name}.txt"
    command = [
        py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)),
        "--format", "raw", "--function", "--nonblocking", "--rate", "250", "-o", str(path),
    ]  # fmt: skip
    if native:
        command.append("--native")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Profile(name, path, process)


def finish(profile: Profile, timeout: float = 60.0) -> Summary | None:
    try:
        profile.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        profile.process.terminate()
        profile.process.wait()
    if not profile.path.exists():
        return None
    return summarize(profile.name, profile.path)


def summarize(name: str, path: Path, *, top: int = 15) -> Summary:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        if any(marker in frames[-1] for marker in _IDLE_MARKERS):
            idle += count
            continue
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    busy = max(1, total - idle)
    return Summary(
        name,
        total,
        idle,
        [(frame, n / busy) for frame, n in own.most_common(top)],
        [(frame, n / busy) for frame, n in inclusive.most_common(top + 10)],
    )


def _short(frame: str) -> str:
    # "function (path/to/module.py:12)" -> "function (module.py:12)"
    head, _, where = frame.partition(" (")
    return f"{head} ({where.rsplit('/', 1)[-1]}" if where else head
