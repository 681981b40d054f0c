"""The scenario simulation with fan-out instances stepped too (``tests.unit.simulation``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from actors import fanout_state
from actors.commands import Advance
from events.base import Event
from events.catalog import WorkflowStatus
from tests.unit.simulation import Outcome, Simulation


class FanOutSimulation(Simulation):
    """The simulation, with fan-out instances stepped too and Advance run to its fixpoint (a
    fan-out takes several rounds: fanned out, instances queued, fanned in)."""

    most_active: int = 0

    def advance(self) -> list[Event]:
        decided: list[Event] = []
        while events := self.decide(Advance(**self.ids, now=self.now)):
            decided += events
        return decided

    def names(self) -> list[str]:
        return list(fanout_state.job_names(self.state.order, self.state.fanouts))

    def run(
        self,
        outcomes: Mapping[str, Sequence[Outcome]] | None = None,
        *,
        cancel_at_step: int | None = None,
        steps: int = 200,
    ) -> None:
        scripts = {name: list(seq) for name, seq in (outcomes or {}).items()}
        for step in range(steps):
            if step == cancel_at_step and self.state.status is WorkflowStatus.RUNNING:
                self.cancel()
            self.advance()
            self._watch_parallel()
            moved = [self._step_job(name, scripts) for name in self.names()]
            if not any(moved) and (cancel_at_step is None or step >= cancel_at_step):
                return
        raise AssertionError("the workflow did not settle")

    def _watch_parallel(self) -> None:
        instances = [n for n in self.names() if n not in self.state.order]
        now = sum(self.state.job(n).status in fanout_state.ACTIVE for n in instances)
        self.most_active = max(self.most_active, now)

    def status_of(self, name: str) -> str:
        return str(self.state.job(name).status)
