"""Executors run one attempt of a job: the shell (default) or registered Python handlers."""

from sdk.worker.executors.base import (
    Abandoned,
    Cancelled,
    ExecutionResult,
    Executor,
    Failed,
    Interrupt,
    Parked,
    Succeeded,
)
from sdk.worker.executors.python import PythonExecutor
from sdk.worker.executors.routing import RoutingExecutor
from sdk.worker.executors.shell import ShellExecutor

__all__ = [
    "Abandoned",
    "Cancelled",
    "ExecutionResult",
    "Executor",
    "Failed",
    "Interrupt",
    "Parked",
    "PythonExecutor",
    "RoutingExecutor",
    "ShellExecutor",
    "Succeeded",
]
