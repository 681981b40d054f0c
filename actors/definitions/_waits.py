"""Reading a job's ``wait_for:`` (``{signal: approve, timeout: 24h}`` or ``{webhook: {match:
{...}}, timeout: 1h}``), logging every problem with its location. A signal's name may be a
template (``approve-${{ item }}``), rendered when the wait starts. A waiting job runs on no
worker, so it has no ``run``, ``uses`` or worker-side fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from actors.definitions import _fields as f
from actors.definitions._problems import Path, ProblemLog

WAIT_FIELDS: Final = ("signal", "webhook", "timeout")
WEBHOOK_FIELDS: Final = ("match",)
Templates = list[tuple[Path, str]]
# What only a worker's job means: meaningless on a job that waits.
_WORKER_FIELDS: Final = (
    "run",
    "uses",
    "with",
    "labels",
    "env",
    "timeout",
    "dispatch_timeout",
    "rate_limit",
    "priority",
)


def read_wait(
    body: Mapping[Any, Any], path: Path, fields: dict[str, Any], log: ProblemLog
) -> Templates:
    """Put ``wait_for`` (a mapping for ``WaitFor``) into ``fields`` when it is valid; returns the
    text values of a webhook's ``match`` (templates to check), with their locations."""
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
        return []
    f.check_fields(value, where, WAIT_FIELDS, log)
    wait: dict[str, Any] = {}
    templates: Templates = []
    signal, webhook = value.get("signal"), value.get("webhook")
    if signal is None and webhook is None:
        log.add(where, "wait_for needs a signal (the name senders use: jetwork signal ID NAME) "
                "or a webhook ({match: {...}})")  # fmt: skip
    elif signal is not None and webhook is not None:
        log.add(where, "set signal or webhook, not both")
    elif isinstance(signal, str) and "${{" in signal:
        # A template (``approve-${{ item }}``): rendered when the wait starts, so that each
        # instance of a fan-out waits for a name of its own (``actors.signals``).
        wait["signal"] = signal
        templates.append(((*where, "signal"), signal))
    elif signal is not None:
        if f.token(signal, (*where, "signal"), log, what="signal name") is not None:
            wait["signal"] = signal
    else:
        match = _read_webhook(webhook, (*where, "webhook"), log, templates)
        if match is not None:
            wait["webhook"] = {"match": match}
    if value.get("timeout") is not None:
        wait["timeout"] = f.duration(value["timeout"], (*where, "timeout"), log, positive=True)
    if "signal" in wait or "webhook" in wait:
        fields["wait_for"] = wait
    return templates


def _read_webhook(
    value: object, path: Path, log: ProblemLog, templates: Templates
) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        log.add(path, f"expected a mapping such as {{match: {{type: paid}}}}, got "
                f"{f.describe(value)}")  # fmt: skip
        return None
    f.check_fields(value, path, WEBHOOK_FIELDS, log)
    match = value.get("match", {})
    if not isinstance(match, Mapping):
        log.add((*path, "match"), f"expected a mapping of keys the body must have equal, got "
                f"{f.describe(match)}")  # fmt: skip
        return None
    checked: dict[str, Any] = f.json_value(match, (*path, "match"), log)
    for key, item in checked.items():
        if isinstance(item, str):
            templates.append(((*path, "match", key), item))
    return checked
