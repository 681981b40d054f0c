"""Executors run one attempt of a job: the shell (default) or registered Python handlers."""

from sdk.executors.base import (
    Abandoned,
    Cancelled,
    ExecutionResult,
    Executor,
    Failed,
    Interrupt,
    Succeeded,
)
from sdk.executors.python import PythonExecutor
from sdk.executors.routing import RoutingExecutor
from sdk.executors.shell import ShellExecutor

__all__ = [
    "Abandoned",
    "Cancelled",
    "ExecutionResult",
    "Executor",
    "Failed",
    "Interrupt",
    "PythonExecutor",
    "RoutingExecutor",
    "ShellExecutor",
    "Succeeded",
]
