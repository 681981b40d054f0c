"""Long-running processes run on uvloop with a collector that runs less often (sdk.runtime)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from sdk.runtime import GC_THRESHOLDS, run_service


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_a_service_runs_on_uvloop_with_the_tuned_collector(restored_gc: None) -> None:
    async def main() -> tuple[str, tuple[int, int, int]]:
        return type(asyncio.get_running_loop()).__module__, gc.get_threshold()

    loop_module, thresholds = run_service(main())
    assert loop_module.startswith("uvloop")
    assert thresholds == GC_THRESHOLDS
    assert gc.get_freeze_count() > 0  # start-up objects are out of every collection
