"""The error-threshold step on hand-made error curves."""

from __future__ import annotations

import numpy as np
import pytest

from effmodel.errors import UsageError
from effmodel.threshold import synops_at_step, threshold_step


@pytest.mark.parametrize(
    "errors,tolerance,step",
    [
        ([0.9, 0.5, 0.2, 0.12, 0.10, 0.10], 0.01, 5),  # 0.12 > 0.10 + 0.01 at step 4
        ([0.9, 0.5, 0.2, 0.12, 0.10, 0.10], 0.05, 4),  # 0.12 is within 0.05
        ([0.5, 0.1, 0.3, 0.1, 0.1], 0.01, 4),  # a relapse at step 3 counts
        ([0.2, 0.2, 0.2], 0.01, 1),  # flat: settled from the start
        ([0.11, 0.10], 0.01, 1),  # exactly at the tolerance is within it
        ([0.12, 0.10], 0.01, 2),
        ([0.0, 0.5], 0.01, 1),  # error rising at the end: every step is below final + tol
        ([0.4], 0.0, 1),
        ([0.9, 0.3, 0.3], 0.0, 2),
    ],
)
def test_threshold_step(errors, tolerance, step):
    assert threshold_step(np.array(errors), tolerance) == step


def test_default_tolerance_is_one_point():
    assert threshold_step([0.5, 0.111, 0.1]) == 3  # 0.111 is 1.1 points above the final error
    assert threshold_step([0.5, 0.109, 0.1]) == 2  # 0.109 is within one point
    assert threshold_step([0.5, 0.5, 0.109, 0.1]) == 3


def test_synops_at_step():
    cumulative = np.array([10.0, 25.0, 45.0, 50.0])
    assert synops_at_step(cumulative, 1) == 10.0
    assert synops_at_step(cumulative, 3) == 45.0
    errors = [0.8, 0.3, 0.1, 0.1]
    assert synops_at_step(cumulative, threshold_step(errors)) == 45.0


def test_bad_inputs():
    with pytest.raises(UsageError):
        threshold_step([])
    with pytest.raises(UsageError):
        threshold_step([0.1], tolerance=-0.01)
