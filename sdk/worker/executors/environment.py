"""What a shell job's command starts from: the worker's environment, or with ``env_clear`` only
``BASIC_ENV`` and the names ``env_allow`` lists (``ShellExecutor.environment`` adds the job's
``env`` and jetwork's own variables on top)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from events.nats_auth import ENV as NATS_AUTH_ENV

BASIC_ENV: Final = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
)
"""What a job keeps of the worker's environment with ``env_clear`` (besides ``env_allow``)."""
WORKER_SECRETS: Final = tuple(
    variable for name, variable in NATS_AUTH_ENV.items() if name not in ("tls_ca", "tls_cert")
)
"""The worker's own NATS identity (``events/nats_auth.py``): never handed to the jobs it runs."""


def job_environment(
    source: Mapping[str, str], *, clear: bool = False, allow: Iterable[str] = ()
) -> dict[str, str]:
    """What a job starts from: all of ``source``, or with ``clear`` only ``BASIC_ENV`` and the
    ``allow`` names (``NAME``, or ``PREFIX*`` for every name starting with ``PREFIX``)."""
    if not clear:
        return {name: value for name, value in source.items() if name not in WORKER_SECRETS}
    names = set(BASIC_ENV)
    prefixes = []
    for entry in allow:
        if entry.endswith("*"):
            prefixes.append(entry[:-1])
        else:
            names.add(entry)
    return {
        name: value
        for name, value in source.items()
        if (name in names or any(name.startswith(prefix) for prefix in prefixes))
        and name not in WORKER_SECRETS
    }
