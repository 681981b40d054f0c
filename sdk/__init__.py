"""jetwork's public Python API: the client, workflow builder, worker SDK and the errors they raise.

::

    from sdk import Client, Workflow

    async with Client.connect() as client:
        handle = await client.start("examples/hello.yaml", inputs={"who": "you"})
        view = await handle.wait(timeout=60)

Names are imported lazily on first use, so ``import sdk.embedded_server`` (or any one module)
stays cheap; ``__all__`` is the supported surface, guarded by ``tests/unit/test_sdk_public_api``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from events.base import RecordedEvent as RecordedEvent
    from events.dead_letters import DeadLetter as DeadLetter
    from events.definition import WorkflowDefinition as WorkflowDefinition
    from events.definition_store import DefinitionConflict as DefinitionConflict
    from events.definition_store import DefinitionNotFound as DefinitionNotFound
    from events.definition_store import StoredDefinition as StoredDefinition
    from events.errors import CommandRefused as CommandRefused
    from events.errors import ConcurrencyConflict as ConcurrencyConflict
    from events.errors import InvalidWorkflow as InvalidWorkflow
    from events.errors import JetworkError as JetworkError
    from events.errors import LeaseLost as LeaseLost
    from events.errors import ServerUnavailable as ServerUnavailable
    from events.errors import StoreError as StoreError
    from events.errors import WorkflowNotFound as WorkflowNotFound
    from events.schedule_store import ScheduleEntry as ScheduleEntry
    from events.schedule_store import ScheduleNotFound as ScheduleNotFound
    from projections.reader import WorkerInfo as WorkerInfo
    from projections.views import JobView as JobView
    from projections.views import WaitingFor as WaitingFor
    from projections.views import WorkflowSummary as WorkflowSummary
    from projections.views import WorkflowView as WorkflowView
    from projections.waiting import UnservedLabelSet as UnservedLabelSet
    from sdk.builder import Input as Input
    from sdk.builder import JobRef as JobRef
    from sdk.builder import Loop as Loop
    from sdk.builder import Retry as Retry
    from sdk.builder import Workflow as Workflow
    from sdk.client.control import ControlResult as ControlResult
    from sdk.client.core import Client as Client
    from sdk.client.handle import RunHandle as RunHandle
    from sdk.client.logs import Claim as Claim
    from sdk.client.logs import LogLine as LogLine
    from sdk.client.progress import ProgressFrame as ProgressFrame
    from sdk.client.workers import WorkerList as WorkerList
    from sdk.embedded_server import EmbeddedServer as EmbeddedServer
    from sdk.errors import InvalidArgument as InvalidArgument
    from sdk.errors import JobNotFound as JobNotFound
    from sdk.errors import WaitTimeout as WaitTimeout
    from sdk.errors import WorkflowNotStarted as WorkflowNotStarted
    from sdk.simulation import DryRun as DryRun
    from sdk.simulation import DryRunJob as DryRunJob
    from sdk.simulation import dry_run as dry_run
    from sdk.worker.config import WorkerConfig as WorkerConfig
    from sdk.worker.core import Worker as Worker
    from sdk.worker.handlers import HandlerRegistry as HandlerRegistry
    from sdk.worker.handlers import PermanentError as PermanentError
    from sdk.worker.in_progress import InProgress as InProgress
    from sdk.worker.job_context import CancellationRequested as CancellationRequested
    from sdk.worker.job_context import JobContext as JobContext

_SOURCES: dict[str, str] = {
    # client
    "Client": "sdk.client.core",
    "RunHandle": "sdk.client.handle",
    "ControlResult": "sdk.client.control",
    "LogLine": "sdk.client.logs",
    "Claim": "sdk.client.logs",
    "ProgressFrame": "sdk.client.progress",
    "WorkflowView": "projections.views",
    "JobView": "projections.views",
    "WorkflowSummary": "projections.views",
    "RecordedEvent": "events.base",
    "DeadLetter": "events.dead_letters",
    "WorkerInfo": "projections.reader",
    "WorkerList": "sdk.client.workers",
    "WaitingFor": "projections.views",
    "UnservedLabelSet": "projections.waiting",
    # defining workflows
    "Workflow": "sdk.builder",
    "JobRef": "sdk.builder",
    "Retry": "sdk.builder",
    "Input": "sdk.builder",
    "Loop": "sdk.builder",
    "WorkflowDefinition": "events.definition",
    "dry_run": "sdk.simulation",
    "DryRun": "sdk.simulation",
    "DryRunJob": "sdk.simulation",
    # workers
    "Worker": "sdk.worker.core",
    "WorkerConfig": "sdk.worker.config",
    "JobContext": "sdk.worker.job_context",
    "HandlerRegistry": "sdk.worker.handlers",
    "PermanentError": "sdk.worker.handlers",
    "InProgress": "sdk.worker.in_progress",
    "CancellationRequested": "sdk.worker.job_context",
    # running a server
    "EmbeddedServer": "sdk.embedded_server",
    # errors
    "JetworkError": "events.errors",
    "WorkflowNotFound": "events.errors",
    "WorkflowNotStarted": "sdk.errors",
    "InvalidWorkflow": "events.errors",
    "InvalidArgument": "sdk.errors",
    "JobNotFound": "sdk.errors",
    "WaitTimeout": "sdk.errors",
    "ServerUnavailable": "events.errors",
    "StoreError": "events.errors",
    "ConcurrencyConflict": "events.errors",
    "CommandRefused": "events.errors",
    "LeaseLost": "events.errors",
    # definitions by name and version, schedules
    "StoredDefinition": "events.definition_store",
    "DefinitionNotFound": "events.definition_store",
    "DefinitionConflict": "events.definition_store",
    "ScheduleEntry": "events.schedule_store",
    "ScheduleNotFound": "events.schedule_store",
}

__all__ = [
    "CancellationRequested",
    "Claim",
    "Client",
    "CommandRefused",
    "ConcurrencyConflict",
    "ControlResult",
    "DeadLetter",
    "DefinitionConflict",
    "DefinitionNotFound",
    "DryRun",
    "DryRunJob",
    "EmbeddedServer",
    "HandlerRegistry",
    "InProgress",
    "Input",
    "InvalidArgument",
    "InvalidWorkflow",
    "JetworkError",
    "JobContext",
    "JobNotFound",
    "JobRef",
    "JobView",
    "LeaseLost",
    "LogLine",
    "Loop",
    "PermanentError",
    "ProgressFrame",
    "RecordedEvent",
    "Retry",
    "RunHandle",
    "ScheduleEntry",
    "ScheduleNotFound",
    "ServerUnavailable",
    "StoreError",
    "StoredDefinition",
    "UnservedLabelSet",
    "WaitTimeout",
    "WaitingFor",
    "Worker",
    "WorkerConfig",
    "WorkerInfo",
    "WorkerList",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowNotFound",
    "WorkflowNotStarted",
    "WorkflowSummary",
    "WorkflowView",
    "dry_run",
]


def __getattr__(name: str) -> Any:
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next time, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
