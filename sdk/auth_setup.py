"""``jetwork server --auth``: the embedded server with least-privilege roles, and their secrets.

Each start generates a fresh password per role (``events.roles``), renders them into the
server's configuration and writes, for local use, ``<data-dir>/auth/<role>.env``: the variables
a process of that role needs (``JETWORK_NATS_URL``, ``_USER``, ``_PASSWORD``, ``_INBOX``), so that
``set -a; . .jetwork/auth/worker.env; set +a; jetwork worker`` runs a worker as a worker. The
files are readable by their owner only; they are rewritten (new passwords) at every start.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from events.nats_auth import ENV, NatsAuth
from events.roles import ROLES, inbox_prefix, render_authorization


@dataclass(frozen=True, slots=True)
class RoleSecrets:
    """The roles' passwords and where their variables files go."""

    directory: Path
    passwords: dict[str, str]

    @classmethod
    def generate(cls, directory: Path) -> RoleSecrets:
        return cls(directory, {role: secrets.token_urlsafe(24) for role in ROLES})

    def server_config(self) -> str:
        return render_authorization(self.passwords)

    def auth(self, role: str) -> NatsAuth:
        """How a process of ``role`` connects."""
        return NatsAuth(user=role, password=self.passwords[role], inbox=inbox_prefix(role))

    def env_file(self, role: str) -> Path:
        return self.directory / f"{role}.env"

    def write_env_files(self, url: str) -> None:
        """``<role>.env`` for every role, owner-only (they hold the passwords)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        for role in ROLES:
            auth = self.auth(role)
            lines = {
                "JETWORK_NATS_URL": url,
                ENV["user"]: role,
                ENV["password"]: self.passwords[role],
                ENV["inbox"]: auth.inbox or "",
            }
            path = self.env_file(role)
            path.touch(mode=0o600)
            os.chmod(path, 0o600)
            path.write_text("".join(f"{name}={value}\n" for name, value in lines.items()))
