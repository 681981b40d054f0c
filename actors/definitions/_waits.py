"""Reading a job's ``wait_for:`` (``wait_for: {signal: approve, timeout: 24h}``), logging every
problem with its location. A waiting job runs on no worker, so it has no ``run``, ``uses`` or
worker-side fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._problems import Path, ProblemLog

WAIT_FIELDS: Final = ("signal", "timeout")
# What only a worker's job means: meaningless on a job that waits.
_WORKER_FIELDS: Final = ("run", "uses", "with", "labels", "env", "timeout", "dispatch_timeout")


def read_wait(body: Mapping[Any, Any], path: Path, fields: dict[str, Any], log: ProblemLog) -> None:
    """Put ``wait_for`` (a mapping for ``WaitFor``) into ``fields`` when it is valid."""
    where = (*path, "wait_for")
    value = body["wait_for"]
    for key in _WORKER_FIELDS:
        if body.get(key) is not None:
            log.add(
                (*path, key),
                f"a job that waits (wait_for) runs on no worker: drop {key}"
                + (" (the wait's own timeout is wait_for.timeout)" if key == "timeout" else ""),
            )
    if not isinstance(value, Mapping):
        log.add(where, f"expected a mapping such as {{signal: approve, timeout: 24h}}, got "
                f"{f.describe(value)}")  # fmt: skip
        return
    f.check_fields(value, where, WAIT_FIELDS, log)
    wait: dict[str, Any] = {}
    signal = value.get("signal")
    if signal is None:
        log.add(where, "wait_for needs a signal: the name senders use (jetwork signal ID NAME)")
    elif f.token(signal, (*where, "signal"), log, what="signal name") is not None:
        wait["signal"] = signal
    if value.get("timeout") is not None:
        wait["timeout"] = f.duration(value["timeout"], (*where, "timeout"), log, positive=True)
    if "signal" in wait:
        fields["wait_for"] = wait
