"""The golden histories (``tests/golden/*.json``) read back as recorded events."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from events import codec
from events.base import RecordedEvent

GOLDEN = Path(__file__).parent.parent / "golden"


def load_golden(name: str) -> tuple[list[RecordedEvent], dict[str, Any]]:
    """The history ``name`` as recorded events, and what it is expected to fold to."""
    document = orjson.loads((GOLDEN / f"{name}.json").read_bytes())
    recorded = [
        RecordedEvent(
            seq=item["seq"],
            subject=item["subject"],
            time=datetime.fromisoformat(item["time"]),
            event=codec.decode(orjson.dumps(item["event"]), subject=item["subject"]),
        )
        for item in document["events"]
    ]
    return recorded, document["expected"]
