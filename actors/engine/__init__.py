"""The engine: owns partitions of workflows and runs the pure actors for them on JetStream."""

from actors.engine.engine import Engine
from actors.engine.settings import EngineSettings

__all__ = ["Engine", "EngineSettings"]
