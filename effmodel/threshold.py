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


# --- the iso-accuracy cost point (issue 13) -------------------------------------------

COST_POINTS = ("settle", "iso-accuracy")
DEFAULT_DELTA = 0.01


def iso_accuracy_step(error_t: np.ndarray, ann_error: float, delta: float = DEFAULT_DELTA) -> tuple[int, bool]:
    """1-based first step at which the SNN's error is within ``delta`` of the
    ANN's error (``error <= ann_error + delta``), and whether it got there.

    Unlike :func:`threshold_step` this does not look at the SNN's own final
    error, so it does not move with the simulation length.  If the SNN never
    gets within ``delta``, the last step is returned with ``False``.
    """
    e = np.asarray(error_t, dtype=float)
    if e.size == 0:
        raise UsageError("no time steps to find a cost point in")
    if delta < 0:
        raise UsageError(f"--delta must be >= 0, got {delta}")
    hit = np.nonzero(e <= ann_error + delta + 1e-12)[0]
    return (int(hit[0] + 1), True) if hit.size else (int(e.size), False)


def cost_point_step(error_t: np.ndarray, cost_point: str = "settle", tolerance: float = DEFAULT_TOLERANCE,
                    ann_error: float | None = None, delta: float = DEFAULT_DELTA) -> tuple[int, bool]:
    """The step the SNN's costs are taken at: ``settle`` (:func:`threshold_step`)
    or ``iso-accuracy`` (:func:`iso_accuracy_step`), with whether it was reached."""
    if cost_point == "settle":
        return threshold_step(error_t, tolerance), True
    if cost_point == "iso-accuracy":
        if ann_error is None:
            raise UsageError("the iso-accuracy cost point needs the ANN's error")
        return iso_accuracy_step(error_t, ann_error, delta)
    raise UsageError(f"unknown cost point {cost_point!r} (use {' or '.join(COST_POINTS)})")
