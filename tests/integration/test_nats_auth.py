"""Connecting to a NATS server that wants proof (``--nats-token``, ``--nats-user``/
``--nats-password``, ``--nats-nkey``, ``--tls-ca``/``--tls-cert``/``--tls-key`` and their
``JETWORK_NATS_*`` variables), against real nats-servers configured for each.

Without the proof the command says the server refused it, with the flags to use; with it the
command works; ``jetwork worker`` as a real process connects with the variables.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nkeys
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from events.connection import NatsSettings, connect
from events.nats_auth import NatsAuth
from events.topology import ensure_topology
from sdk.cli import main
from sdk.embedded_server import find_nats_server, free_port
from tests.integration.test_metrics import spawn

pytestmark = pytest.mark.slow


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


Serve = Callable[..., Server]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    started: list[Server] = []

    def start(config: str, *, scheme: str = "nats") -> Server:
        port = free_port()
        path = tmp_path / f"server-{port}.conf"
        store = tmp_path / str(port)
        path.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {store} }}\n{config}")
        process = subprocess.Popen(
            [str(find_nats_server()), "-c", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.02)
        server = Server(f"{scheme}://127.0.0.1:{port}", process)
        started.append(server)
        return server

    yield start
    for server in started:
        server.process.terminate()
        server.process.wait(10)


def jetwork(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env or {})
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


async def refused_then_accepted(url: str, auth: NatsAuth, *proof: str) -> None:
    nc = await connect(NatsSettings(url=url, auth=auth))  # the streams and buckets, as a server
    try:
        await ensure_topology(nc.jetstream())
    finally:
        await nc.close()
    code, out = await asyncio.to_thread(jetwork, "workers", "--nats", url)
    assert code == 1 and "refused the connection" in out and "--nats-token" in out, out
    code, out = await asyncio.to_thread(jetwork, "workers", "--nats", url, *proof)
    assert (code, out.strip()) == (0, "no live workers"), out


async def test_a_token_and_a_user_with_a_password(serve: Serve) -> None:
    token = serve('authorization { token: "s3cret-t0ken" }')
    await refused_then_accepted(
        token.url, NatsAuth(token="s3cret-t0ken"), "--nats-token", "s3cret-t0ken"
    )
    code, out = await asyncio.to_thread(
        jetwork, "workers", "--nats", token.url, env={"JETWORK_NATS_TOKEN": "s3cret-t0ken"}
    )
    assert code == 0, out
    code, out = await asyncio.to_thread(
        jetwork, "workers", "--nats", token.url, "--nats-token", "wrong"
    )
    assert code == 1 and "wrong" not in out.replace("--nats-token", ""), out  # never echoed

    users = serve('authorization { users: [{user: ops, password: "pa55word"}] }')
    await refused_then_accepted(users.url, NatsAuth(user="ops", password="pa55word"),
                                "--nats-user", "ops", "--nats-password", "pa55word")  # fmt: skip
    code, out = await asyncio.to_thread(
        jetwork, "workers", "--nats", users.url, "--nats-user", "ops"
    )
    assert code == 1 and "JETWORK_NATS_USER and JETWORK_NATS_PASSWORD go together" in out
    # A rebuild's helper processes connect with the same proof (given as options here).
    code, out = await asyncio.to_thread(
        jetwork, "projections", "rebuild", "--processes", "2", "--json", "--nats", users.url,
        "--nats-user", "ops", "--nats-password", "pa55word",
    )  # fmt: skip
    assert code == 0 and '"processes": 2' in out and "helper failed" not in out, out


async def test_an_nkey_and_a_worker_process(serve: Serve, tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    server = serve(f"authorization {{ users: [{{nkey: {public}}}] }}")
    await refused_then_accepted(server.url, NatsAuth(nkey=str(seed_file)),
                                "--nats-nkey", str(seed_file))  # fmt: skip

    env = {k: v for k, v in os.environ.items() if not k.startswith("JETWORK_")}
    env |= {"JETWORK_NATS_URL": server.url, "JETWORK_NATS_NKEY": str(seed_file)}
    worker = await spawn("worker", env=env)
    try:
        await worker.wait_for_line("worker started")
        code, out = await asyncio.to_thread(
            jetwork, "workers", "--nats", server.url, "--nats-nkey", str(seed_file)
        )
        assert code == 0 and "w-" in out, out
    finally:
        log = await worker.stop()
        assert worker.proc.returncode == 0, log[-2000:]


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]


def _certificate(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: Issuer | None, *, ca: bool
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = issuer if issuer else (subject, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _issued(directory: Path, name: str, issuer: Issuer) -> tuple[str, str]:
    """A certificate for ``name`` signed by ``issuer``: its PEM file and its key's."""
    key = ec.generate_private_key(ec.SECP256R1())
    return _write(directory / name, _certificate(name, key, issuer, ca=False), key)


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.with_suffix(".key").write_bytes(private)
    return str(path.with_suffix(".pem")), str(path.with_suffix(".key"))


async def test_mutual_tls(serve: Serve, tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("jetwork test CA", ca_key, None, ca=True)
    ca_pem, _ = _write(tmp_path / "ca", ca, ca_key)
    issuer = (ca.subject, ca_key)
    server_pem, server_pk = _issued(tmp_path, "127.0.0.1", issuer)
    client_pem, client_pk = _issued(tmp_path, "worker", issuer)
    tls = f'cert_file: "{server_pem}", key_file: "{server_pk}", ca_file: "{ca_pem}", verify: true'
    server = serve(f"tls {{ {tls} }}", scheme="tls")
    mutual = NatsAuth(tls_ca=ca_pem, tls_cert=client_pem, tls_key=client_pk)
    nc = await connect(NatsSettings(url=server.url, auth=mutual))
    try:
        await ensure_topology(nc.jetstream())
    finally:
        await nc.close()
    code, out = await asyncio.to_thread(jetwork, "workers", "--nats", server.url)
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in out, out  # no CA: not trusted
    code, out = await asyncio.to_thread(
        jetwork, "workers", "--nats", server.url, "--tls-ca", ca_pem
    )
    assert code == 1 and "CERTIFICATE_REQUIRED" in out, out  # it wants a client certificate
    code, out = await asyncio.to_thread(
        jetwork, "workers", "--nats", server.url, "--tls-ca", ca_pem,
        "--tls-cert", client_pem, "--tls-key", client_pk,
    )  # fmt: skip
    assert (code, out.strip()) == (0, "no live workers"), out
