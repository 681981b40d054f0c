"""Lease ids: unguessable, bound to one claim's epoch, verifiable by any gateway without state.

A lease id is ``<payload>.<mac>``: the payload (base64url of compact JSON) names the workflow,
job, attempt, epoch, worker, label set, lease length, grant time, the stream sequence of the
dispatch it was claimed from, that of the claim's ``JobStarted`` and, when the dispatch's ack
deadline is the lease, its JetStream ack subject (``gateway.keeping``); the mac is HMAC-SHA256 of
the payload (128 bits, base64url) under a key every gateway shares
(``JETWORK_HTTP_LEASE_SECRET``, else one created once in KV ``jw_gateway``). A forged or altered
id fails verification (404: no such lease); a genuine one whose epoch no longer holds the job is
answered 409 by the log check that follows. Ids signed before the ack subject was added (ten
fields) still verify: a rolling upgrade of several gateways keeps the leases in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

import orjson

MAC_BYTES: Final = 16
SECRET_BYTES: Final = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseId:
    workflow_id: str
    job: str
    attempt: int
    epoch: int
    worker_id: str
    labelset: str
    """The token of the label set the job was dispatched on (where its lease expiry fires)."""
    ttl: float
    granted_at_ms: int
    dispatch_seq: int
    claim_seq: int = 0
    """Stream sequence of the lease's ``JobStarted``: a result expects it as the job actor's
    last sequence, so the happy path needs no read (a conflict reads what came since)."""
    ack: str = ""
    """The dispatch message's ack subject when its consumer's ack deadline is the lease (any
    gateway renews it with ``+WPI`` and ends it with ``+ACK``); empty when a durable timer
    keeps the lease."""
    group: str | None = None
    """The job's concurrency group (its slot is given back with the result, by any gateway)."""
    traceparent: str | None = None
    """The run's caller trace context (``JobSpec.traceparent``), so the gateway's spans of the
    attempt join the caller's trace."""
    quota: str | None = None
    """The job's namespace's running-jobs group (``events/quotas.py``), given back likewise."""


class LeaseSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("a lease secret needs 16 bytes or more")
        self._secret = secret

    @staticmethod
    def new_secret() -> bytes:
        return secrets.token_bytes(SECRET_BYTES)

    def sign(self, lease: LeaseId) -> str:
        fields = [
            lease.workflow_id,
            lease.job,
            lease.attempt,
            lease.epoch,
            lease.worker_id,
            lease.labelset,
            lease.ttl,
            lease.granted_at_ms,
            lease.dispatch_seq,
            lease.claim_seq,
        ]
        optional = [lease.ack, lease.traceparent or "", lease.group or "", lease.quota or ""]
        while optional and not optional[-1]:  # ids without them are as short as before
            optional.pop()
        fields += optional
        payload = _b64(orjson.dumps(fields))
        return f"{payload}.{_b64(self._mac(payload))}"

    def verify(self, lease_id: str) -> LeaseId | None:
        """The lease an id names, or None when it is malformed or was not signed here."""
        payload, sep, mac = lease_id.partition(".")
        if not sep or len(lease_id) > 4096:
            return None
        try:
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            fields = orjson.loads(_unb64(payload))
            wf, job, attempt, epoch, worker, labelset, ttl, granted, seq, claimed = fields[:10]
            ack, traceparent, group, quota = [*fields[10:], "", "", "", ""][:4]
            return LeaseId(
                workflow_id=str(wf),
                job=str(job),
                attempt=int(attempt),
                epoch=int(epoch),
                worker_id=str(worker),
                labelset=str(labelset),
                ttl=float(ttl),
                granted_at_ms=int(granted),
                dispatch_seq=int(seq),
                claim_seq=int(claimed),
                ack=str(ack),
                traceparent=str(traceparent) or None,
                group=str(group) or None,
                quota=str(quota) or None,
            )
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
            return None  # signed by us, so never expected: treat as unknown

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
