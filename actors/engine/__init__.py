"""The engine host: runs the pure actors against JetStream (commands, events, timers)."""

from actors.engine.engine import DispatchPort, Engine
from actors.engine.host import WorkflowHost
from actors.engine.settings import EngineSettings

__all__ = ["DispatchPort", "Engine", "EngineSettings", "WorkflowHost"]
