"""Webhook tokens: ``POST /api/hooks/<token>`` names one wait of one job, unforgeably.

A token is ``<payload>.<mac>``: the payload (base64url of compact JSON) names the workflow, the
job and the attempt that waits; the mac is HMAC-SHA256 (128 bits, base64url) under a key derived
from the gateway's signing secret (``JETWORK_HTTP_LEASE_SECRET``, else the one in KV
``jw_gateway``) for hooks only, so a lease id is never a hook token nor the reverse. Tokens are
not stored: whoever holds the secret computes the same one (``status`` shows it, the gateway
verifies it), so a new secret (rotation) makes every old URL invalid and ``status`` shows the
new ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

import orjson

HOOKS_PATH: Final = "/api/hooks/"
# The gateway's signing secret: in KV ``jw_gateway`` under this key (created by the first gateway),
# unless ``SECRET_ENV`` gives it.
GATEWAY_SECRET_KEY: Final = "lease-secret"
SECRET_ENV: Final = "JETWORK_HTTP_LEASE_SECRET"
_MAC_BYTES: Final = 16
_PURPOSE: Final = b"jetwork hook tokens v1"


@dataclass(frozen=True, slots=True)
class Hook:
    workflow_id: str
    job: str
    attempt: int


class HookSigner:
    """Signs and verifies hook tokens under ``secret`` (the gateway's signing secret)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()

    def token(self, hook: Hook) -> str:
        payload = _b64(orjson.dumps([hook.workflow_id, hook.job, hook.attempt]))
        return f"{payload}.{_b64(self._mac(payload))}"

    def path(self, hook: Hook) -> str:
        """``/api/hooks/<token>``: where the webhook is sent."""
        return HOOKS_PATH + self.token(hook)

    def verify(self, token: str) -> Hook | None:
        """The wait a token names, or None when it is malformed or was not signed with this
        secret."""
        payload, sep, mac = token.partition(".")
        if not sep or len(token) > 1024:
            return None
        try:
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(given, self._mac(payload)):
            return None
        try:
            wf, job, attempt = orjson.loads(_unb64(payload))
            return Hook(str(wf), str(job), int(attempt))
        except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
            return None

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
