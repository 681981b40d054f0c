"""Bearer tokens per role: ``worker`` (the worker protocol), ``client`` (start, read, cancel,
pause, resume, skip, retry),
``admin`` (everything).

Tokens come from ``JETWORK_HTTP_TOKENS`` (``role:token`` comma-separated) and/or a file of
``role:token`` lines (``#`` comments). Without any token every request is allowed: the gateway
refuses to start that way on anything but a loopback address (``GatewaySettings``).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    WORKER = "worker"
    CLIENT = "client"
    ADMIN = "admin"

    def may(self, needed: Role) -> bool:
        """True when a caller with this role may do what ``needed`` guards."""
        return self is Role.ADMIN or self is needed


@dataclass(frozen=True, slots=True)
class Tokens:
    """Known tokens and their roles (compared in constant time)."""

    by_token: dict[str, Role] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_token)

    def role_of(self, token: str) -> Role | None:
        found: Role | None = None
        for known, role in self.by_token.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = role
        return found

    def merged(self, other: Tokens) -> Tokens:
        return Tokens({**self.by_token, **other.by_token})

    def roles(self) -> list[str]:
        return sorted({role.value for role in self.by_token.values()})


def parse_tokens(text: str, *, source: str, lines: bool = False) -> Tokens:
    """Parse ``role:token`` entries (comma-separated, or one per line for a file).

    Raises ``ValueError`` naming the source and the entry for an unknown role, an empty or
    short token (fewer than 8 characters), or a token given to two roles.
    """
    entries = text.splitlines() if lines else text.split(",")
    by_token: dict[str, Role] = {}
    for number, raw in enumerate(entries, start=1):
        entry = raw.split("#", 1)[0].strip() if lines else raw.strip()
        if not entry:
            continue
        where = f"{source}, line {number}" if lines else f"{source}, entry {number}"
        role_text, sep, token = entry.partition(":")
        role_text, token = role_text.strip(), token.strip()
        if not sep:
            raise ValueError(f"{where}: expected role:token, got {_shown(entry)}")
        try:
            role = Role(role_text)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"{where}: unknown role {role_text!r} (one of: {known})") from None
        if len(token) < 8:
            raise ValueError(f"{where}: the {role} token must have 8 characters or more")
        if by_token.get(token, role) is not role:
            raise ValueError(f"{where}: the same token is given to two roles")
        by_token[token] = role
    return Tokens(by_token)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _shown(entry: str) -> str:
    return repr(entry[:3] + "…") if len(entry) > 3 else repr(entry)
