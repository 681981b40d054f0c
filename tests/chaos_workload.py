"""The chaos run's workflows: ~10 shell jobs each, in four shapes, with the end each must reach.

Shapes (chosen by the workflow's index, so a run is reproducible):
- ``chain``: ten jobs, each needing the one before;
- ``fan``: one job, eight in parallel (on label set ``chaos``), one that needs them all;
- ``retry``: two jobs that fail their first attempt and succeed on a retry (fixed 0.2 s backoff),
  six in parallel, and one needing them all;
- ``failing``: a job fails for good (the workflow fails), its dependant is skipped, a ``continue``
  job fails without failing the workflow, an ``if: always()`` clean-up runs anyway;
- ``nested``: a sub-workflow (a chain of three, its output passed back) beside a loop of three
  iterations, and a job needing both (its children are workflows of their own, ``sub-...``);
- ``dynamic``: a ``for_each`` over a job's output (six instances) beside a 2 x 2 matrix, and a
  job needing both that checks the fan-in's list;
- ``signalled``: a job waits for the signal ``go``, which the driver sends right after the start
  (kept if it arrives before the wait), and the job after it reads the signal's data.

Jobs are ``true`` or ``sleep 0.05``: the faults, not the work, are under test. Whatever is killed,
each shape ends the same way, so the end is known before the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LABEL = "chaos"
FLAKY = 'test "$JETWORK_ATTEMPT" -ge 2'  # fails attempt 1, succeeds from attempt 2 on
SHAPES = (
    "chain",
    "fan",
    "chain",
    "retry",
    "fan",
    "chain",
    "retry",
    "fan",
    "chain",
    "failing",
    "nested",
    "dynamic",
    "signalled",
)
SIGNAL = "go"


@dataclass(frozen=True)
class Planned:
    index: int
    shape: str
    definition: dict[str, Any]
    expected: str  # "succeeded" or "failed"

    @property
    def idempotency_key(self) -> str:
        return f"chaos-{self.index}"


def _work(n: int) -> str:
    return "sleep 0.05" if n % 2 else "true"


def chain() -> dict[str, Any]:
    jobs: dict[str, Any] = {"j0": {"run": _work(0)}}
    jobs |= {f"j{n}": {"run": _work(n), "needs": [f"j{n - 1}"]} for n in range(1, 10)}
    return jobs


def fan() -> dict[str, Any]:
    middle = [f"b{n}" for n in range(8)]
    jobs: dict[str, Any] = {"a": {"run": "true"}}
    for n, name in enumerate(middle):
        jobs[name] = {"run": _work(n), "needs": ["a"], "labels": [LABEL]}
    jobs["z"] = {"run": "true", "needs": middle}
    return jobs


def retry() -> dict[str, Any]:
    policy = {"max_attempts": 3, "backoff": "fixed", "delay": "200ms"}
    jobs: dict[str, Any] = {"a": {"run": "true"}}
    jobs |= {f"r{n}": {"run": FLAKY, "needs": ["a"], "retry": policy} for n in range(2)}
    jobs |= {f"p{n}": {"run": _work(n), "needs": ["a"]} for n in range(6)}
    jobs["z"] = {"run": "true", "needs": ["r0", "r1", *(f"p{n}" for n in range(6))]}
    return jobs


def failing() -> dict[str, Any]:
    return {
        "a": {"run": "true"},
        "b": {"run": "exit 3", "needs": ["a"]},
        "c": {"run": "true", "needs": ["b"]},
        "d": {"run": "false", "needs": ["a"], "on_failure": "continue"},
        "e": {"run": "sleep 0.05", "needs": ["a"]},
        "f": {"run": "true", "needs": ["e"]},
        "g": {"run": "true", "needs": ["e"], "labels": [LABEL]},
        "h": {"run": "true", "needs": ["d"], "if": "always()"},
        "cleanup": {"run": "true", "needs": ["b", "c"], "if": "always()"},
        "last": {"run": "true", "needs": ["f", "g"]},
    }


def nested() -> dict[str, Any]:
    return {
        "a": {"run": "true"},
        "sub": {"workflow": "child", "needs": ["a"], "with": {"n": "7"}},
        "loop": {
            "needs": ["a"],
            "run": 'test ${{ loop.iteration }} -ge 3 && echo "::set-output done=yes" || true',
            "loop": {"until": "outputs.done == 'yes'", "max_iterations": 5},
        },
        "z": {"run": "test '${{ needs.sub.outputs.n }}' = 7", "needs": ["sub", "loop"]},
    }


def dynamic() -> dict[str, Any]:
    return {
        "a": {"run": 'echo "::set-output items=[1,2,3,4,5,6]"'},
        "each": {
            "needs": ["a"],
            "for_each": "${{ fromJSON(needs.a.outputs.items) }}",
            "run": 'echo "::set-output sq=$(( ${{ item }} * ${{ item }} ))"',
        },
        "grid": {
            "strategy": {"matrix": {"x": ["1", "2"], "y": ["a", "b"]}},
            "run": "test -n '${{ matrix.x }}${{ matrix.y }}'",
        },
        "z": {
            "needs": ["each", "grid"],
            "run": "echo '${{ needs.each.outputs.sq }}' | grep -q 36",
        },
    }


def signalled() -> dict[str, Any]:
    return {
        "a": {"run": "true"},
        "approve": {"needs": ["a"], "wait_for": {"signal": SIGNAL, "timeout": "10m"}},
        "z": {"needs": ["approve"], "run": "test '${{ needs.approve.outputs.by }}' = chaos"},
    }


CHILD: dict[str, Any] = {
    "name": "chaos-child",
    "inputs": {"n": {"required": True}},
    "jobs": {
        "c0": {"run": "true"},
        "c1": {"run": "sleep 0.05", "needs": ["c0"]},
        "c2": {"run": 'echo "::set-output n=${{ inputs.n }}"', "needs": ["c1"]},
    },
    "outputs": {"n": "${{ needs.c2.outputs.n }}"},
}
_BUILDERS = {
    "chain": chain,
    "fan": fan,
    "retry": retry,
    "failing": failing,
    "nested": nested,
    "dynamic": dynamic,
    "signalled": signalled,
}


def plan(index: int) -> Planned:
    shape = SHAPES[index % len(SHAPES)]
    definition: dict[str, Any] = {"name": f"chaos-{shape}", "jobs": _BUILDERS[shape]()}
    if shape == "nested":
        definition["workflows"] = {"child": CHILD}
    expected = "failed" if shape == "failing" else "succeeded"
    return Planned(index, shape, definition, expected)
