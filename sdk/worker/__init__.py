"""The worker SDK: ``Worker`` pulls jobs for its labels and handlers and runs them under leases.

Modules: ``core`` (the worker's lifecycle, and ``shutdown``: stopping it), ``pull`` (pull requests,
prefetch), ``consumers`` (label set consumers), ``slots`` (slots and lanes), ``attempt`` (claim,
run, report one job; ``dispatch_message``: ack, release, dead letter), ``config`` (with
``config_env``: variables and parsing, ``config_checks``: validation), ``logs`` and ``log_buffer``
(a job's log), ``presence``, ``signals``, ``results``, ``handlers`` and ``job_context`` (Python
handlers), ``executors`` (shell and Python). Names are imported lazily, so
``import sdk.worker.config`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdk.worker.config import WorkerConfig as WorkerConfig
    from sdk.worker.core import Worker as Worker

_SOURCES: dict[str, str] = {"Worker": "sdk.worker.core", "WorkerConfig": "sdk.worker.config"}

__all__ = ["Worker", "WorkerConfig"]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk.worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
