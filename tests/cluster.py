"""A 3-node JetStream cluster on loopback for tests, started from the repo's own configs.

The configs in ``nats/cluster/node{1,2,3}.conf`` stay the source: each is read, its loopback ports
(client, monitoring, cluster routes) are mapped to free ones and its ``store_dir`` to a temporary
directory; everything else (server names, cluster name, routes, ``sync_interval``, limits) is
used as written. ``python -m tests.cluster`` runs one by hand until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sdk.embedded_server import find_nats_server, free_port

CONFIG_DIR = Path(__file__).resolve().parent.parent / "nats" / "cluster"
NODE_CONFIGS = tuple(CONFIG_DIR / f"node{n}.conf" for n in (1, 2, 3))
_LOOPBACK_PORT = re.compile(r"127\.0\.0\.1:(\d+)")
_STORE_DIR = re.compile(r'^([ \t]*store_dir:[ \t]*)"?[^"\n]*"?[ \t]*$', re.MULTILINE)
_SERVER_NAME = re.compile(r"^server_name:\s*(\S+)\s*$", re.MULTILINE)
_CLIENT_LISTEN = re.compile(r"^listen:\s*127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)
_MONITOR = re.compile(r"^http:\s*127\.0\.0\.1:(\d+)\s*$", re.MULTILINE)


def derive_configs(
    sources: tuple[Path, ...], store_root: Path, *, sync_interval: str | None = None
) -> list[str]:
    """The node configs with every loopback port remapped (consistently) and the store moved.

    ``sync_interval`` overrides the configs' own value when given (the repo says ``always``).
    """
    texts = [source.read_text() for source in sources]
    ports = sorted({int(port) for text in texts for port in _LOOPBACK_PORT.findall(text)})
    mapping = {port: free_port() for port in ports}
    derived = []
    for index, text in enumerate(texts, start=1):
        text = _LOOPBACK_PORT.sub(lambda m: f"127.0.0.1:{mapping[int(m.group(1))]}", text)
        store = store_root / f"n{index}"
        text, found = _STORE_DIR.subn(rf'\g<1>"{store}"', text)
        if found != 1:
            raise ValueError(f"{sources[index - 1]}: expected one store_dir, found {found}")
        if sync_interval is not None:
            text = re.sub(r"sync_interval:\s*\S+", f"sync_interval: {sync_interval}", text)
        derived.append(text)
    return derived


@dataclass
class ClusterNode:
    config: str
    directory: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return _one(_SERVER_NAME, self.config)

    @property
    def port(self) -> int:
        return int(_one(_CLIENT_LISTEN, self.config))

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor(self) -> str:
        return f"http://127.0.0.1:{_one(_MONITOR, self.config)}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config_file = self.directory / "server.conf"
        config_file.write_text(self.config)
        command = [str(find_nats_server()), "-c", str(config_file), "-l", str(self.log_file)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    @property
    def log_file(self) -> Path:
        return self.directory / "nats-server.log"

    def kill(self) -> None:
        """SIGKILL: the node vanishes without a goodbye, as in a crash."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def healthy(self) -> bool:
        """The node is up and its JetStream is current with the cluster (``/healthz``)."""
        try:
            with urllib.request.urlopen(f"{self.monitor}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


@dataclass
class LocalCluster:
    """Three ``nats-server`` processes forming the JetStream cluster of ``nats/cluster/``."""

    directory: Path
    sync_interval: str | None = None
    startup_timeout: float = 30.0
    nodes: list[ClusterNode] = field(default_factory=list)

    def start(self) -> LocalCluster:
        configs = derive_configs(
            NODE_CONFIGS, self.directory / "store", sync_interval=self.sync_interval
        )
        self.nodes = [
            ClusterNode(config, self.directory / f"node{index}")
            for index, config in enumerate(configs, start=1)
        ]
        for node in self.nodes:
            node.start()
        self.wait_healthy()
        return self

    def wait_healthy(self, nodes: list[ClusterNode] | None = None) -> None:
        deadline = time.monotonic() + self.startup_timeout
        waiting = list(nodes or self.nodes)
        while waiting:
            waiting = [node for node in waiting if not node.healthy()]
            for node in waiting:
                if not node.running:
                    raise RuntimeError(f"{node.name} exited; log:\n{_tail(node.log_file)}")
            if waiting and time.monotonic() > deadline:
                names = ", ".join(node.name for node in waiting)
                raise RuntimeError(f"{names} not healthy within {self.startup_timeout}s")
            if waiting:
                time.sleep(0.1)

    @property
    def url(self) -> str:
        """Every node, comma-separated: what ``JETWORK_NATS_URL`` would hold."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _one(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise ValueError(f"no {pattern.pattern!r} in the node config")
    return match.group(1)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp)) as cluster:
        print(f"cluster up: JETWORK_NATS_URL={cluster.url}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
