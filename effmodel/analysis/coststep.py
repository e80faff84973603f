"""The cost step's uncertainty: a bootstrap over test images.

"The last step whose error exceeds the final error by more than the
tolerance" is an extreme-value statistic of the test images: with 100
images one slow image can move it by tens of steps.  Given per-image
correctness per step (``correct``: images x steps, bool), this module
resamples the images with replacement, recomputes the error curve and the
settle step of every replicate (vectorised), and gives percentile intervals
for the step and for the factor it implies.  Storing that matrix per result
is the store's job (not done yet); these functions are what the report will
call once it is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .verdict import Interval

BOOTSTRAP = 2000
SEED = 0


def settle_steps(errors: Any, tolerance: float) -> Any:
    """Per row of ``errors`` (replicates x steps), the 1-based first step from
    which the error stays within ``tolerance`` of its final value (the rule of
    :func:`effmodel.threshold.threshold_step`, for many curves at once)."""
    import numpy as np

    e = np.atleast_2d(np.asarray(errors, dtype=float))
    above = e > e[:, -1:] + tolerance + 1e-12
    T = e.shape[1]
    last = T - 1 - np.argmax(above[:, ::-1], axis=1)  # index of the last step above the bound
    return np.where(above.any(axis=1), last + 2, 1)


@dataclass(frozen=True)
class CostStep:
    """The settle step with its bootstrap interval over images, and the factor
    at it (when costs were given)."""

    images: int
    step: Interval
    factor: Interval | None
    replicates: int

    def sentence(self) -> str:
        f = "" if self.factor is None else f", factor {self.factor.estimate:.3g} [{self.factor.low:.3g}, {self.factor.high:.3g}]"
        return (f"cost step {self.step.estimate:.0f} [{self.step.low:.0f}, {self.step.high:.0f}] over {self.images} "
                f"images ({self.replicates} resamples){f}")


def cost_step(correct: Any, tolerance: float = 0.01, snn_cost_cumulative: Any = None, ann_cost: float | None = None,
              B: int = BOOTSTRAP, seed: int = SEED, level: float = 0.95) -> CostStep:
    """Bootstrap the settle step over the images of ``correct`` (images x
    steps, bool).  With ``snn_cost_cumulative`` (the SNN's cost per image up
    to each step) and ``ann_cost``, the factor ``ann_cost / snn_cost[step]``
    gets its interval too."""
    import numpy as np

    c = np.asarray(correct, dtype=bool)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
        from ..errors import UsageError

        raise UsageError(f"per-image correctness must be images x steps, got shape {c.shape}")
    n = c.shape[0]
    point = int(settle_steps(1 - c.mean(axis=0), tolerance)[0])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1 / n), size=B)  # how often each image is drawn
    errors = 1 - (counts @ c) / n
    steps = settle_steps(errors, tolerance)
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(steps, q, method="inverted_cdf")
    factor = None
    if snn_cost_cumulative is not None and ann_cost is not None:
        cum = np.asarray(snn_cost_cumulative, dtype=float)
        f = ann_cost / cum[steps - 1]
        flo, fhi = np.quantile(f, q, method="inverted_cdf")
        factor = Interval(float(ann_cost / cum[point - 1]), float(flo), float(fhi))
    return CostStep(n, Interval(float(point), float(lo), float(hi)), factor, B)
