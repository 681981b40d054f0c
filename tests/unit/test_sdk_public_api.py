"""``sdk.__all__`` is the supported public surface: every name resolves; it changes on purpose."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import sdk

EXPECTED = {
    "CancellationRequested", "Claim", "Client", "CommandRefused", "ConcurrencyConflict",
    "ControlResult", "DeadLetter", "DryRun", "DryRunJob", "dry_run", "InProgress",
    "ProgressFrame",
    "EmbeddedServer", "HandlerRegistry", "Input", "InvalidArgument", "InvalidWorkflow",
    "JetworkError", "JobContext", "JobNotFound", "JobRef", "JobView", "LeaseLost", "LogLine",
    "Loop",
    "PermanentError", "RecordedEvent", "Retry", "RunHandle", "ServerUnavailable", "StoreError",
    "UnservedLabelSet", "WaitTimeout", "WaitingFor", "Worker", "WorkerConfig", "WorkerInfo",
    "WorkerList", "Workflow", "WorkflowDefinition", "WorkflowNotFound", "WorkflowNotStarted",
    "WorkflowSummary", "WorkflowView",
    # definitions by name and version, schedules
    "DefinitionConflict", "DefinitionNotFound", "ScheduleEntry", "ScheduleNotFound",
    "StoredDefinition",
}  # fmt: skip


def test_all_is_the_expected_sorted_surface() -> None:
    assert set(sdk.__all__) == EXPECTED, "update EXPECTED (and the README) when the API changes"
    assert sdk.__all__ == sorted(sdk.__all__)
    assert len(sdk.__all__) == len(set(sdk.__all__))


def test_every_name_resolves_to_a_documented_jetwork_object() -> None:
    for name in sdk.__all__:
        value = getattr(sdk, name)
        assert inspect.isclass(value) or inspect.isfunction(value), name
        assert value.__name__ == name
        assert value.__module__.split(".")[0] in {"sdk", "events", "projections"}, name
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_errors_share_the_one_root() -> None:
    errors = [name for name in sdk.__all__ if name.endswith(("Error", "Found", "Timeout"))]
    others = ["InvalidWorkflow", "InvalidArgument", "ConcurrencyConflict", "LeaseLost",
              "ServerUnavailable", "WorkflowNotStarted", "CancellationRequested"]  # fmt: skip
    for name in [*errors, *others]:
        assert issubclass(getattr(sdk, name), sdk.JetworkError), name


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        sdk.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_star_import_and_lazy_loading() -> None:
    namespace: dict[str, object] = {}
    exec("from sdk import *", namespace)
    assert set(EXPECTED) <= set(namespace)
    # Importing one module of the package does not import the client or the worker.
    code = (
        "import sdk.embedded_server, sys; "
        "print('sdk.client.core' in sys.modules, 'sdk.worker.core' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert importlib.import_module("sdk").Client is sdk.Client
