"""How a process proves who it is to NATS: credentials, nkeys, user/password, token, TLS.

For real deployments (a server run by someone else, roles per process kind). Every jetwork
process reads the same variables, and every command takes the matching options
(``sdk/cli/_common.nats_option``), which set this process's ``NatsAuth`` for every connection
it makes:

| variable | option | what |
|---|---|---|
| ``JETWORK_NATS_CREDS`` | ``--nats-creds FILE`` | a ``.creds`` file (user JWT and nkey seed) |
| ``JETWORK_NATS_NKEY`` | ``--nats-nkey FILE`` | a file holding a user nkey seed (``SU…``) |
| ``JETWORK_NATS_USER``, ``_PASSWORD`` | ``--nats-user``, ``--nats-password`` | user, password |
| ``JETWORK_NATS_TOKEN`` | ``--nats-token`` | a token |
| ``JETWORK_NATS_TLS_CA`` | ``--tls-ca FILE`` | the CA that signed the server's certificate |
| ``JETWORK_NATS_TLS_CERT``, ``_KEY`` | ``--tls-cert``, ``--tls-key`` | client certificate (mTLS) |
| ``JETWORK_NATS_INBOX`` | ``--nats-inbox`` | reply inboxes' prefix (a role's own: events/roles) |

A URL may also carry ``user:password@`` or ``token@``. Secrets never appear in logs or errors.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from events.errors import JetworkError

ENV: Final = {
    "creds": "JETWORK_NATS_CREDS",
    "nkey": "JETWORK_NATS_NKEY",
    "user": "JETWORK_NATS_USER",
    "password": "JETWORK_NATS_PASSWORD",
    "token": "JETWORK_NATS_TOKEN",
    "tls_ca": "JETWORK_NATS_TLS_CA",
    "tls_cert": "JETWORK_NATS_TLS_CERT",
    "tls_key": "JETWORK_NATS_TLS_KEY",
    "inbox": "JETWORK_NATS_INBOX",
}
_FILES: Final = ("creds", "nkey", "tls_ca", "tls_cert", "tls_key")
_INBOX: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class InvalidNatsAuth(JetworkError):
    """The connection settings contradict each other or name a file that cannot be read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsAuth:
    creds: str | None = None
    nkey: str | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    inbox: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> NatsAuth:
        return cls(**{name: environ.get(var) or None for name, var in ENV.items()})

    def environment(self) -> dict[str, str]:
        """These settings as the ``JETWORK_NATS_*`` variables ``from_env`` reads (a child
        process's): every one of them, empty where unset, so none is inherited."""
        return {var: getattr(self, name) or "" for name, var in ENV.items()}

    def merged(self, other: NatsAuth) -> NatsAuth:
        """These settings, with ``other``'s where these have none (options over variables)."""
        return NatsAuth(**{f.name: getattr(self, f.name) or getattr(other, f.name)
                           for f in fields(self)})  # fmt: skip

    def problems(self) -> list[str]:
        """What is wrong, each naming the setting (empty: fine)."""
        found = []
        for name in _FILES:
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                found.append(f"{ENV[name]}={path!r}: no such file")
        if sum(x is not None for x in (self.creds, self.nkey, self.user, self.token)) > 1:
            found.append("use one of credentials, nkey, user/password and token, not several")
        if (self.user is None) != (self.password is None):
            found.append(f"{ENV['user']} and {ENV['password']} go together")
        if (self.tls_cert is None) != (self.tls_key is None):
            found.append(f"{ENV['tls_cert']} and {ENV['tls_key']} go together")
        if self.inbox is not None and not _INBOX.match(self.inbox):
            found.append(
                f"{ENV['inbox']}={self.inbox!r}: not a subject prefix (letters, digits, _ -)"
            )
        return found

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``; ``InvalidNatsAuth`` when they cannot be."""
        problems = self.problems()
        if problems:
            raise InvalidNatsAuth("invalid NATS connection settings: " + "; ".join(problems))
        options: dict[str, Any] = {}
        if self.creds:
            options["user_credentials"] = self.creds
        if self.nkey:
            options["nkeys_seed"] = self.nkey
        if self.user:
            options["user"], options["password"] = self.user, self.password
        if self.token:
            options["token"] = self.token
        if self.tls_ca or self.tls_cert:
            options["tls"] = self._tls()
        if self.inbox:
            options["inbox_prefix"] = self.inbox
        return options

    def _tls(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert and self.tls_key:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidNatsAuth(f"cannot use the TLS files: {exc}") from None
        return context

    def __repr__(self) -> str:  # never print a secret
        shown = {f.name: ("***" if f.name in ("password", "token") else getattr(self, f.name))
                 for f in fields(self) if getattr(self, f.name) is not None}  # fmt: skip
        return f"NatsAuth({shown})"


class _Process:
    auth: NatsAuth = NatsAuth()


def set_process_auth(auth: NatsAuth) -> None:
    """The settings every connection of this process uses (the command line's options)."""
    _Process.auth = auth


def current_process_auth() -> NatsAuth:
    """The settings given with ``set_process_auth`` (options only, no variables)."""
    return _Process.auth


def process_auth(environ: Mapping[str, str] = os.environ) -> NatsAuth:
    """The options given to this process, over the ``JETWORK_NATS_*`` variables."""
    return _Process.auth.merged(NatsAuth.from_env(environ))
