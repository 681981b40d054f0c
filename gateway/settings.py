"""The gateway's settings: where it listens, its tokens, its limits; env loading in one place.

| variable | meaning | default |
|---|---|---|
| ``JETWORK_HTTP`` | ``HOST:PORT`` to listen on | ``127.0.0.1:3000`` |
| ``JETWORK_HTTP_TOKENS`` | bearer tokens, ``role:token`` comma-separated | none |
| ``JETWORK_HTTP_TOKENS_FILE`` | a file of ``role:token`` lines | none |
| ``JETWORK_HTTP_MAX_BODY`` | largest request body (bytes or ``KiB``/``MiB``) | ``1MiB`` |
| ``JETWORK_HTTP_LEASE_SECRET`` | key signing lease ids (else one shared through KV) | KV |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gateway.auth import Tokens, parse_tokens

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 3000
DEFAULT_MAX_BODY: Final = 1 << 20
DEFAULT_LEASE_TTL: Final = 30.0
"""Lease of a claim that names none (the seed's worker SDK default)."""
MAX_LEASE_TTL: Final = 24 * 3600.0
MAX_WAIT: Final = 60.0
"""Longest long-poll of a claim (``wait_secs``)."""
CONSUMER_LEASE: Final = 30.0
"""``ack_wait`` of a label set consumer the gateway creates (workers share it: see README)."""


class InvalidGatewaySetting(ValueError):
    """A gateway setting that cannot be used; the message names it and its source."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewaySettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: Tokens = field(default_factory=Tokens)
    insecure: bool = False
    """Serve a non-loopback address without tokens (refused otherwise)."""
    max_body: int = DEFAULT_MAX_BODY
    lease_secret: bytes | None = None
    """HMAC key of lease ids; ``None``: the one kept in KV (shared by every gateway)."""

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check_exposure(self) -> str | None:
        """Why this cannot start (a non-loopback address without tokens), or None.

        With ``insecure`` it may, and the caller says so loudly.
        """
        if self.loopback or self.tokens or self.insecure:
            return None
        return (
            f"refusing to serve HTTP on {self.host}, which is not a loopback address, without "
            "tokens: anyone who reaches it could start, cancel and run jobs. Set "
            "JETWORK_HTTP_TOKENS (role:token,...) or JETWORK_HTTP_TOKENS_FILE, or pass "
            "--insecure if something in front of it checks who calls"
        )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        listen: str | None = None,
        tokens_file: str | None = None,
        insecure: bool = False,
    ) -> GatewaySettings:
        """Flags (given here) beat variables; a bad value raises ``InvalidGatewaySetting``."""
        where = listen or environ.get("JETWORK_HTTP") or f"{DEFAULT_HOST}:{DEFAULT_PORT}"
        host, port = parse_listen(where)
        text = environ.get("JETWORK_HTTP_TOKENS", "")
        path = tokens_file or environ.get("JETWORK_HTTP_TOKENS_FILE")
        try:
            tokens = parse_tokens(text, source="JETWORK_HTTP_TOKENS")
            if path:
                try:
                    content = Path(path).read_text()
                except OSError as exc:
                    raise InvalidGatewaySetting(
                        f"cannot read the tokens file {path}: {exc}"
                    ) from None
                tokens = tokens.merged(parse_tokens(content, source=path, lines=True))
        except ValueError as exc:
            raise InvalidGatewaySetting(str(exc)) from None
        max_body = DEFAULT_MAX_BODY
        if raw := environ.get("JETWORK_HTTP_MAX_BODY"):
            from sdk.worker.config import parse_size

            try:
                max_body = parse_size(raw)
            except ValueError as exc:
                raise InvalidGatewaySetting(f"JETWORK_HTTP_MAX_BODY: {exc}") from None
        secret = environ.get("JETWORK_HTTP_LEASE_SECRET")
        if secret is not None and len(secret) < 16:
            raise InvalidGatewaySetting("JETWORK_HTTP_LEASE_SECRET must have 16 characters or more")
        return cls(
            host=host,
            port=port,
            tokens=tokens,
            insecure=insecure,
            max_body=max_body,
            lease_secret=secret.encode() if secret else None,
        )


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:3000`` for IPv6; ``:3000`` is loopback) as (host, port)."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise InvalidGatewaySetting(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:3000)")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise InvalidGatewaySetting(f"{text!r}: the port must be 0-65535")
    host = host.removeprefix("[").removesuffix("]") or DEFAULT_HOST
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
