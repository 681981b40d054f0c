"""A projector's niceness (``projections/yielding.py``, ``ProjectorSettings.nice``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from projections.projector import ProjectorSettings
from projections.yielding import NICEST, check_niceness

# Run in a child: a niceness, once raised, cannot be taken back without privileges.
RAISES_THEN_KEEPS = """
import os
from projections.yielding import lower_cpu_priority
start = os.getpriority(os.PRIO_PROCESS, 0)
print(start, lower_cpu_priority(start + 5), lower_cpu_priority(start + 2), lower_cpu_priority(0))
"""


def test_the_niceness_is_raised_and_never_lowered() -> None:
    out = subprocess.run([sys.executable, "-c", RAISES_THEN_KEEPS], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    start = int(out[0])
    assert [int(value) for value in out[1:]] == [start + 5] * 3


def test_the_default_is_10_and_a_variable_sets_it() -> None:
    assert ProjectorSettings().nice == ProjectorSettings.from_env({}).nice == 10
    assert ProjectorSettings.from_env({"JETWORK_PROJECTOR_NICE": "0"}).nice == 0
    assert ProjectorSettings.from_env({"JETWORK_PROJECTOR_NICE": "19"}).nice == NICEST


@pytest.mark.parametrize("value", [-1, NICEST + 1])
def test_a_niceness_out_of_range_is_refused_naming_it(value: int) -> None:
    with pytest.raises(ValueError, match=rf"^where={value}: a niceness from 0"):
        check_niceness(value, what="where")


def test_a_fractional_niceness_is_refused() -> None:
    with pytest.raises(ValueError, match=r"JETWORK_PROJECTOR_NICE=2\.5: a whole number"):
        ProjectorSettings.from_env({"JETWORK_PROJECTOR_NICE": "2.5"})
