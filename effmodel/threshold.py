"""The error-threshold step: when has the SNN's error settled?

The report's SO-Costs are "synaptic operations accumulated up to the first
time step reaching the error threshold", without defining the threshold.
effmodel defines it as the first step ``t`` (1-based) from which the error
never again exceeds the final error by more than ``tolerance`` (absolute,
as a fraction: 0.01 = one percentage point).  SO-Costs are the SynOps per
image accumulated up to and including that step.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

DEFAULT_TOLERANCE = 0.01


def threshold_step(error_t: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """1-based first step from which ``error_t`` stays within ``tolerance``
    of its final value."""
    e = np.asarray(error_t, dtype=float)
    if e.size == 0:
        raise UsageError("no time steps to find a threshold in")
    if tolerance < 0:
        raise UsageError(f"threshold tolerance must be >= 0, got {tolerance}")
    above = np.nonzero(e > e[-1] + tolerance + 1e-12)[0]
    return int(above[-1] + 2) if above.size else 1


def synops_at_step(synops_cumulative: np.ndarray, step: int) -> float:
    """Cumulative SynOps per image after 1-based ``step``."""
    return float(np.asarray(synops_cumulative)[step - 1])
