"""The gateway's pure parts: lease ids, tokens, settings, log chunks."""

from __future__ import annotations

import base64
from dataclasses import replace

import orjson
import pytest

from gateway.auth import Role, bearer, parse_tokens
from gateway.lease_ids import LeaseId, LeaseSigner
from gateway.models import LogChunkIn
from gateway.settings import GatewaySettings, InvalidGatewaySetting, parse_listen
from gateway.web import ApiError
from gateway.worker_api import log_lines

LEASE = LeaseId(
    workflow_id="wf-1",
    job="build",
    attempt=2,
    epoch=3,
    worker_id="py-1",
    labelset="linux+python",
    ttl=60.0,
    granted_at_ms=1_700_000_000_000,
    dispatch_seq=42,
)


def test_a_lease_id_verifies_to_the_lease_it_was_signed_for() -> None:
    signer = LeaseSigner(b"k" * 32)
    assert signer.verify(signer.sign(LEASE)) == LEASE


def test_a_lease_id_carries_the_dispatch_ack_subject_and_ids_without_one_still_verify() -> None:
    signer = LeaseSigner(b"k" * 32)
    held = replace(LEASE, ack="$JS.ACK.JW_EVENTS.ls-abc.1.42.7.1796579415920468588.0")
    assert signer.verify(signer.sign(held)) == held
    # A timer-kept lease signs the ten fields of ids issued before the ack subject existed.
    payload = signer.sign(LEASE).split(".")[0]
    assert len(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))) == 10
    assert signer.verify(signer.sign(LEASE)) == LEASE


def test_a_lease_id_carries_the_callers_trace_context_with_or_without_an_ack() -> None:
    signer = LeaseSigner(b"k" * 32)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    for ack in ("", "$JS.ACK.JW_EVENTS.ls-x.1.2.3.4.5"):
        lease = replace(LEASE, ack=ack, traceparent=traceparent)
        assert signer.verify(signer.sign(lease)) == lease
    assert signer.verify(signer.sign(LEASE)) == LEASE  # none: the id is as short as before
    grouped = replace(LEASE, group="deploy-eu")
    assert signer.verify(signer.sign(grouped)) == grouped
    assert len(signer.sign(LEASE)) < len(signer.sign(replace(LEASE, traceparent=traceparent)))


def test_an_http_workers_attempt_is_observed_under_its_handler_or_as_shell() -> None:
    from events.labels import token_of
    from gateway.observed import attempt_ref

    assert attempt_ref(replace(LEASE, labelset=token_of(["linux"], "resize"))).handler == "resize"
    assert attempt_ref(replace(LEASE, labelset=token_of(["linux"], None))).handler == "shell"


def test_a_lease_id_altered_forged_or_signed_elsewhere_is_unknown() -> None:
    signer = LeaseSigner(b"k" * 32)
    lease_id = signer.sign(LEASE)
    payload, mac = lease_id.split(".")
    other = LeaseSigner(b"x" * 32).sign(LEASE)
    tampered = signer.sign(replace(LEASE, epoch=4)).split(".")[0] + "." + mac
    for bad in (other, tampered, payload, f"{payload}.", "a.b", "", "x" * 5000, lease_id + "A"):
        assert signer.verify(bad) is None, bad


def test_lease_secrets_are_long_enough_and_random() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        LeaseSigner(b"short")
    assert LeaseSigner.new_secret() != LeaseSigner.new_secret()


def test_tokens_parse_per_role_from_a_variable_or_a_file() -> None:
    tokens = parse_tokens("worker:abcdefgh1, admin:ABCDEFGH2", source="JETWORK_HTTP_TOKENS")
    assert tokens.role_of("abcdefgh1") is Role.WORKER
    assert tokens.role_of("ABCDEFGH2") is Role.ADMIN
    assert tokens.role_of("nope") is None
    lines = parse_tokens("# comment\nclient: c-secret-1  # trailing\n\n", source="f", lines=True)
    assert lines.role_of("c-secret-1") is Role.CLIENT
    assert Role.ADMIN.may(Role.WORKER) and not Role.CLIENT.may(Role.WORKER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("root:abcdefgh1", "entry 1: unknown role 'root'"),
        ("worker:short", "entry 1: the worker token must have 8 characters"),
        ("worker:abcdefgh1,admin:abcdefgh1", "entry 2: the same token is given to two roles"),
        ("justatoken", "entry 1: expected role:token"),
    ],
)
def test_bad_tokens_are_refused_with_where_they_came_from(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tokens(text, source="JETWORK_HTTP_TOKENS")


def test_bearer_headers() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None


def test_listen_addresses_and_exposure() -> None:
    assert parse_listen("127.0.0.1:3000") == ("127.0.0.1", 3000)
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    assert parse_listen(":3000") == ("127.0.0.1", 3000)
    for bad in ("3000", "host:", "host:99999", "host:x"):
        with pytest.raises(InvalidGatewaySetting):
            parse_listen(bad)
    assert GatewaySettings(host="localhost").check_exposure() is None
    assert GatewaySettings(host="::1").check_exposure() is None
    exposed = GatewaySettings(host="0.0.0.0").check_exposure()
    assert exposed is not None and "JETWORK_HTTP_TOKENS" in exposed and "--insecure" in exposed
    assert GatewaySettings(host="0.0.0.0", insecure=True).check_exposure() is None
    tokens = parse_tokens("admin:abcdefgh1", source="t")
    assert GatewaySettings(host="10.0.0.5", tokens=tokens).check_exposure() is None


def test_settings_from_the_environment(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "tokens"  # type: ignore[operator]
    path.write_text("client:c-secret-1\n")
    settings = GatewaySettings.from_env(
        {"JETWORK_HTTP": "0.0.0.0:8080", "JETWORK_HTTP_TOKENS": "admin:abcdefgh1",
         "JETWORK_HTTP_TOKENS_FILE": str(path), "JETWORK_HTTP_MAX_BODY": "64KiB"}
    )  # fmt: skip
    assert (settings.host, settings.port, settings.max_body) == ("0.0.0.0", 8080, 65536)
    assert settings.tokens.roles() == ["admin", "client"]
    flags = GatewaySettings.from_env({"JETWORK_HTTP": "0.0.0.0:8080"}, listen="127.0.0.1:9")
    assert (flags.host, flags.port) == ("127.0.0.1", 9)
    with pytest.raises(InvalidGatewaySetting, match="cannot read the tokens file"):
        GatewaySettings.from_env({"JETWORK_HTTP_TOKENS_FILE": str(path) + ".missing"})
    with pytest.raises(InvalidGatewaySetting, match="LEASE_SECRET"):
        GatewaySettings.from_env({"JETWORK_HTTP_LEASE_SECRET": "short"})


def test_pushed_chunks_become_numbered_lines_of_the_leased_job() -> None:
    chunks = [
        LogChunkIn(
            workflow_id="wf-1", job_id="build", sequence=4, data="a\nb\n", timestamp_ms=2000
        ),
        LogChunkIn(data="", stream="stderr"),
        LogChunkIn(data="x" * 20_000, stream="weird"),
    ]
    lines = log_lines(chunks, workflow_id="wf-1", job="build")
    assert [(c.seq, c.stream, c.line, c.ts) for c in lines[:2]] == [
        (4, "stdout", "a", 2.0),
        (4, "stdout", "b", 2.0),
    ]
    assert (lines[2].stream, lines[2].line) == ("stderr", "")
    assert lines[3].stream == "stdout" and len(lines[3].line) < 17_000
    with pytest.raises(ApiError, match=r"chunks.0: names wf-2/build"):
        log_lines(
            [LogChunkIn(workflow_id="wf-2", job_id="build", data="x")],
            workflow_id="wf-1",
            job="build",
        )


def test_the_claim_answer_has_the_documented_shape() -> None:
    from datetime import UTC, datetime

    from actors.job import evolve, pending
    from events.catalog import JobQueued, JobSpec, JobStarted
    from gateway.leases import Claim
    from gateway.models import ClaimOut, JobOut
    from gateway.worker_api import claim_out

    spec = JobSpec(
        run="make", labels=("linux",), env={"A": "1"}, upstream_outputs={"b": {"v": "2"}}
    )
    now = datetime.now(UTC)
    state = evolve(
        evolve(
            pending("wf-1", "build"),
            JobQueued(workflow_id="wf-1", job="build", attempt=2, spec=spec, queued_at=now),
        ),
        JobStarted(workflow_id="wf-1", job="build", attempt=2, epoch=3, worker_id="py-1",
                   lease_ttl=60, started_at=now),
    )  # fmt: skip
    answer = claim_out(Claim(lease_id="id.mac", lease=LEASE, state=state))
    parsed = ClaimOut.model_validate(answer)
    assert parsed.model_dump(mode="json", by_alias=True) == answer
    fields = {f.alias or name for name, f in JobOut.model_fields.items()}
    assert set(answer["job"]) == fields
    assert answer["job"]["upstream_outputs"] == {"b": {"v": "2"}}
