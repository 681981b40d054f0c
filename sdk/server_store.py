"""Who runs nats-server on a store directory: one server per store, none outliving its parent.

nats-server 2.15 does not lock its store: a second server on the same directory starts happily
and both write to it (verified). And a ``jetwork server`` killed with SIGKILL (the OOM killer)
used to leave its embedded nats-server running, orphaned, holding the port and the store, so the
next start failed on the port. So:

- On Linux the server is started through a tiny launcher that sets ``PR_SET_PDEATHSIG`` (SIGTERM)
  and then execs nats-server: the kernel stops it when the process that started it dies, however
  it dies. (nats-server cannot watch a pipe itself, and a launcher needs no ``preexec_fn``, which
  is unsafe in a process with threads.)
- Each server started writes ``nats-server.pid`` into its store (its pid, its parent's, its port).
  Before starting, the store is searched for a nats-server using it: by that file, and by the
  ``-sd <store>`` of every running nats-server (how an orphan of an older jetwork, which wrote no
  pid file, is found). A server whose parent is the jetwork process that started it is left
  alone and the start refused; an orphan is stopped (SIGTERM, SIGKILL after a grace).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

PID_FILE: Final = "nats-server.pid"
# Words in a parent's command line that mark it as a jetwork process (an older version's
# server, which wrote no pid file, is still owned while its ``jetwork server`` lives).
_JETWORK_MARKS: Final = ("jetwork", "sdk.cli")
# Sets the parent-death signal, checks the parent did not die already, and becomes nats-server.
_LAUNCHER: Final = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(sys.argv[1]), 0, 0, 0)\n"
    "os.getppid() == int(sys.argv[2]) or os._exit(70)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


@dataclass(frozen=True)
class StoreServer:
    """A running nats-server on a store: its pid, its parent's, and whether a jetwork process
    still owns it (``owner``: that process's pid) or it is an orphan (``owner is None``)."""

    pid: int
    ppid: int
    owner: int | None
    owner_command: str = ""


def launch_command(command: list[str]) -> list[str]:
    """``command`` wrapped so that the server dies with this process (Linux, main thread).

    The parent-death signal follows the *thread* that started the child, so it is only set from
    the main thread (which lives as long as the process); elsewhere the command is unchanged and
    the pid file still lets the next start find an orphan.
    """
    if not sys.platform.startswith("linux"):
        return command
    if threading.current_thread() is not threading.main_thread():
        return command
    return [
        sys.executable, "-I", "-S", "-c", _LAUNCHER,
        str(int(signal.SIGTERM)), str(os.getpid()), *command,
    ]  # fmt: skip


def write_pid_file(store: Path, *, pid: int, port: int) -> None:
    record = {"pid": pid, "owner": os.getpid(), "port": port, "store": str(store.resolve())}
    (store / PID_FILE).write_bytes(orjson.dumps(record))


def remove_pid_file(store: Path, *, pid: int) -> None:
    """Remove the pid file if it still names ``pid`` (a newer server may have replaced it)."""
    path = store / PID_FILE
    with contextlib.suppress(OSError, orjson.JSONDecodeError, TypeError):
        if orjson.loads(path.read_bytes()).get("pid") == pid:
            path.unlink()


def servers_on(store: Path) -> list[StoreServer]:
    """Every running nats-server whose store is ``store``, and who owns each."""
    store = store.resolve()
    recorded = _read_pid_file(store)
    candidates = set(recorded or {}) | set(_nats_servers())
    found = []
    for pid in sorted(candidates):
        info = _process(pid)
        if info is None or not _serves_store(info[1], store):
            continue  # gone, or a reused pid, or another store
        ppid = info[0]
        found.append(_owned(pid, ppid, recorded_owner=(recorded or {}).get(pid)))
    return found


def stop_orphan(pid: int, *, grace: float = 10.0) -> None:
    """SIGTERM (JetStream flushes and closes its store), SIGKILL if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, grace):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 5.0)


def _owned(pid: int, ppid: int, *, recorded_owner: int | None) -> StoreServer:
    if ppid <= 1:
        return StoreServer(pid, ppid, None)
    parent = _process(ppid)
    command = " ".join(parent[1]) if parent else ""
    if recorded_owner == ppid or any(mark in command for mark in _JETWORK_MARKS):
        return StoreServer(pid, ppid, ppid, command)
    return StoreServer(pid, ppid, None, command)  # adopted by a subreaper: an orphan


def _read_pid_file(store: Path) -> dict[int, int] | None:
    """``{server pid: owner pid}`` from the store's pid file, if it has a readable one."""
    try:
        record = orjson.loads((store / PID_FILE).read_bytes())
        return {int(record["pid"]): int(record["owner"])}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _serves_store(argv: list[str], store: Path) -> bool:
    if not argv or Path(argv[0]).name != "nats-server":
        return False
    for flag, value in itertools.pairwise(argv):
        if flag in ("-sd", "--store_dir"):
            with contextlib.suppress(OSError):
                return Path(value).resolve() == store
    return False


def _nats_servers() -> list[int]:
    """Pids of running processes that look like nats-server (by their command line)."""
    proc = Path("/proc")
    if proc.is_dir():
        pids = []
        for entry in proc.iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    first = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
                    if first.endswith(b"nats-server"):
                        pids.append(int(entry.name))
        return pids
    pids = []
    for line in _ps("-eo", "pid=,args="):
        pid, _, args = line.strip().partition(" ")
        if args.split() and args.split()[0].endswith("nats-server"):
            pids.append(int(pid))
    return pids


def _process(pid: int) -> tuple[int, list[str]] | None:
    """(parent pid, argv) of a live process; None if there is none (or only a zombie)."""
    if not Path("/proc").is_dir():
        return _process_by_ps(pid)
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[1]), [part.decode(errors="replace") for part in argv if part]


def _process_by_ps(pid: int) -> tuple[int, list[str]] | None:
    lines = _ps("-o", "ppid=,stat=,args=", "-p", str(pid))
    if not lines:
        return None
    ppid, state, *argv = lines[0].split()
    return None if state.startswith("Z") else (int(ppid), argv)


def _ps(*args: str) -> list[str]:
    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return [line for line in out.splitlines() if line.strip()]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _process(pid) is None:
            return True
        time.sleep(0.05)
    return _process(pid) is None
