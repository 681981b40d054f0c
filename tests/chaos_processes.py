"""Engine and worker processes for the chaos run: start, SIGKILL, SIGSTOP/SIGCONT, clean up.

Each process is a real ``jetwork server --no-projector`` or ``jetwork worker`` (``python -m
sdk.cli``), in its own session (a Ctrl-C in the terminal reaches the driver only, which then
cleans up), with its output appended to one log file per slot across restarts. Every process ever
started is registered so that an exit of the driver, however it happens, kills what is left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_EVERY_PROCESS: list[subprocess.Popen[bytes]] = []


def _kill_leftovers() -> None:
    for proc in _EVERY_PROCESS:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


atexit.register(_kill_leftovers)


def jetwork(*args: str) -> list[str]:
    return [sys.executable, "-m", "sdk.cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    env.update(extra)
    return env


@dataclass
class Managed:
    """One slot (``engine-1``, ``worker-3``): a process that is killed and started again."""

    name: str
    command: Callable[[int], list[str]]  # generation -> argv (a worker gets a new id each time)
    env: dict[str, str]
    log: Path
    generation: int = 0
    paused: bool = False
    unexpected_exits: list[int] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        self.note_exit()
        self.generation += 1
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== {self.name} generation {self.generation} ===\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                self.command(self.generation),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=self.env,
                start_new_session=True,
            )
        _EVERY_PROCESS.append(self._proc)
        self.paused = False

    def note_exit(self) -> None:
        """Record an exit the driver did not cause (a crash, a refusal to start)."""
        if self._proc is not None and self._proc.poll() is not None:
            self.unexpected_exits.append(self._proc.returncode)
            self._proc = None

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing flushed, leases left to lapse."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            if proc is not None:
                self.unexpected_exits.append(proc.returncode)
            return
        proc.kill()
        proc.wait()
        self.paused = False

    def pause(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM twice (a worker then aborts its jobs and kills their process groups), then
        SIGKILL if it is still there after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"
