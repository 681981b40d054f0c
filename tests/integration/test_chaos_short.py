"""Issue 7, item 6, short version: the chaos run of ``tests/chaos.py`` in under a minute.

40 workflows of ~10 jobs on the 3-node cluster (R3) with 3 engine and 4 worker processes, while
two engines and two workers are SIGKILLed (and started again), one worker and one engine are
frozen past their leases and the event stream's leader node is killed and restarted. Then the
whole log is replayed by ``tests/invariants.py``: every workflow ended as its shape says, nothing
completed twice, every re-execution explained by a lease expiry. ``make chaos`` runs the long
version.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import ChaosConfig, run_chaos

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


async def test_a_short_chaos_run_breaks_no_invariant(tmp_path: Path) -> None:
    config = ChaosConfig(
        workflows=40,
        seconds=30,
        engine_kills=2,
        worker_kills=2,
        worker_pauses=1,
        engine_pauses=1,
        node_kills=1,
        between_faults=(2.0, 5.0),
        drain_timeout=45,
        directory=tmp_path,
        keep=True,  # pytest's tmp_path: the logs stay for a failure's post-mortem
    )
    result = await run_chaos(config)
    print("\n" + result.summary())
    assert result.ok, result.summary()
    report = result.report
    assert report is not None
    # 40 submitted (3 of them ``failing``, 3 ``nested``), and the 3 nested ones' child workflows.
    assert report.workflows == 43 and report.ends == {"succeeded": 40, "failed": 3}
    assert sum(result.faults.values()) >= 4, "the faults must land within the window"
    assert result.faults["node SIGKILL"] == 1
