"""NATS connection settings (``events/nats_auth.py``): checked before connecting, secrets never
shown, and never handed to a job by the worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.nats_auth import InvalidNatsAuth, NatsAuth
from sdk.worker.executors.environment import job_environment


def test_the_variables_are_read_and_options_win() -> None:
    env = {"JETWORK_NATS_TOKEN": "from-env", "JETWORK_NATS_TLS_CA": "/ca.pem"}
    read = NatsAuth.from_env(env)
    assert (read.token, read.tls_ca) == ("from-env", "/ca.pem")
    merged = NatsAuth(token="from-option").merged(read)
    assert (merged.token, merged.tls_ca) == ("from-option", "/ca.pem")


def test_every_problem_is_named(tmp_path: Path) -> None:
    auth = NatsAuth(creds=str(tmp_path / "missing.creds"), token="t", user="u", tls_cert="c.pem")
    problems = auth.problems()
    assert f"JETWORK_NATS_CREDS={str(tmp_path / 'missing.creds')!r}: no such file" in problems
    assert "use one of credentials, nkey, user/password and token, not several" in problems
    assert "JETWORK_NATS_USER and JETWORK_NATS_PASSWORD go together" in problems
    assert "JETWORK_NATS_TLS_CERT and JETWORK_NATS_TLS_KEY go together" in problems
    with pytest.raises(InvalidNatsAuth, match="invalid NATS connection settings: "):
        auth.options()


def test_options_for_nats_py(tmp_path: Path) -> None:
    assert NatsAuth().options() == {}
    assert NatsAuth(user="u", password="p").options() == {"user": "u", "password": "p"}
    seed = tmp_path / "user.nk"
    seed.write_text("SU...")
    assert NatsAuth(nkey=str(seed)).options() == {"nkeys_seed": str(seed)}
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    with pytest.raises(InvalidNatsAuth, match="cannot use the TLS files"):
        NatsAuth(tls_ca=str(ca)).options()


def test_secrets_are_not_shown() -> None:
    shown = repr(NatsAuth(user="ops", password="hunter2", tls_ca="/ca.pem"))
    assert "hunter2" not in shown and "ops" in shown and "***" in shown


def test_the_workers_nats_identity_never_reaches_a_job() -> None:
    worker_env = {
        "PATH": "/bin", "JETWORK_NATS_TOKEN": "t", "JETWORK_NATS_PASSWORD": "p",
        "JETWORK_NATS_CREDS": "/w.creds", "JETWORK_NATS_URL": "nats://x:4222",
    }  # fmt: skip
    assert job_environment(worker_env) == {"PATH": "/bin", "JETWORK_NATS_URL": "nats://x:4222"}
    allowed = job_environment(worker_env, clear=True, allow=["JETWORK_*"])
    assert allowed == {"PATH": "/bin", "JETWORK_NATS_URL": "nats://x:4222"}
