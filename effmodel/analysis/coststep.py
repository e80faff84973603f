"""The cost step's uncertainty: a bootstrap over test images.

"The last step whose error exceeds the final error by more than the
tolerance" is an extreme-value statistic of the test images: with 100
images one slow image can move it by tens of steps.  Given per-image
correctness per step (``correct``: images x steps, bool), this module
resamples the images with replacement, recomputes the error curve and the
settle step of every replicate (vectorised), and gives percentile intervals
for the step and for the factor it implies.  The store keeps that matrix
per result (:meth:`effmodel.store.Store.correct_images`), for simulators
that return each image's output spikes; :func:`item_cost_steps` gives every
stored result its interval (or the reason it has none), which the report
shows in its per-network table and in Table 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .verdict import Interval

BOOTSTRAP = 2000
SEED = 0
CHUNK = 200  # bootstrap replicates drawn at once


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
    cf = c.astype(np.float32)  # counts @ cf sums at most n small integers: exact in float32 below 2**24
    steps = np.empty(B, dtype=np.int64)
    for lo in range(0, B, CHUNK):  # replicates in chunks: (B x n) draw counts would not fit for 10,000 images
        k = min(CHUNK, B - lo)
        drawn = rng.integers(0, n, size=(k, n)) + n * np.arange(k)[:, None]  # n images drawn with replacement, per replicate
        counts = np.bincount(drawn.ravel(), minlength=k * n).reshape(k, n)  # how often each image is drawn
        steps[lo:lo + k] = settle_steps(1 - (counts.astype(np.float32) @ cf).astype(float) / n, tolerance)
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(steps, q, method="inverted_cdf")
    factor = None
    if snn_cost_cumulative is not None and ann_cost is not None:
        cum = np.asarray(snn_cost_cumulative, dtype=float)
        f = ann_cost / cum[steps - 1]
        flo, fhi = np.quantile(f, q, method="inverted_cdf")
        factor = Interval(float(ann_cost / cum[point - 1]), float(flo), float(fhi))
    return CostStep(n, Interval(float(point), float(lo), float(hi)), factor, B)


# --- every stored result ------------------------------------------------------------------

NO_CORRECTNESS = "no per-image correctness stored (the simulator returned no output spikes, or the result predates it)"


@dataclass(frozen=True)
class ItemCostStep:
    """One stored result's cost step with its interval over test images, or
    why it has none (``interval`` None)."""

    run_id: str
    model: str
    simulator: str
    seed: Any
    cost_model: str
    images: int | None
    interval: CostStep | None
    why: str = ""

    def cells(self) -> list[str]:
        """``[step [lo, hi], factor [lo, hi]]``, ``-`` where not available."""
        if self.interval is None:
            return ["-", "-"]
        s, f = self.interval.step, self.interval.factor
        return [f"{s.estimate:.0f} [{s.low:.0f}, {s.high:.0f}]",
                "-" if f is None else f"{f.estimate:.3g} [{f.low:.3g}, {f.high:.3g}]"]


def item_cost_steps(inputs: Any, cost_models: Mapping[str, Any], B: int = BOOTSTRAP,
                    seed: int = SEED) -> dict[tuple[str, str, str], ItemCostStep]:
    """Per stored result (key ``(run_id, model, simulator)``), its settle step
    bootstrapped over its test images, with the factor under its own cost
    model (priced per step by :func:`effmodel.analysis.curves.cost_curve`).

    A result has no interval when no per-image correctness is stored, when
    its cost point is not ``settle``, or when the stored correctness (the
    spike-count readout) does not reproduce its stored error curve (a run
    with ``--readout potential``)."""
    import numpy as np

    from ..readout import unpack_correct
    from ..threshold import DEFAULT_TOLERANCE
    from .curves import cost_curve
    from .robustness import _layer_rows, _num, _series

    correct = getattr(inputs, "correct", None)
    packed = {} if correct is None or not len(correct) else {
        (str(r["run_id"]), str(r["model"]), str(r["simulator"])): r for r in correct.to_dict("records")}
    series, layers = _series(inputs.timesteps), _layer_rows(inputs.layers)
    out = {}
    for r in inputs.results.to_dict("records"):
        key = (str(r["run_id"]), str(r["model"]), str(r["simulator"]))
        base = dict(run_id=key[0], model=key[1], simulator=key[2], seed=r.get("seed"), cost_model=str(r.get("cost_model")))
        p, s = packed.get(key), series.get(key)
        point = str(r.get("cost_point") or "settle")
        why = ""
        if p is None:
            why = NO_CORRECTNESS
        elif point not in ("settle", "nan"):
            why = f"its cost point is {point}; the bootstrap covers the settle step"
        elif s is None:
            why = "no per-step series stored"
        if why:
            out[key] = ItemCostStep(**base, images=None if p is None else int(p["images"]), interval=None, why=why)
            continue
        n, T = int(p["images"]), int(p["steps"])
        c = unpack_correct(p["packed"], n, T)
        err, syn = s
        if len(err) != T or np.max(np.abs((1 - c.mean(axis=0)) - err)) > 0.5 / n:
            out[key] = ItemCostStep(**base, images=n, interval=None, why=(
                f"the per-image correctness (spike-count readout) does not reproduce the stored error curve "
                f"(readout {r.get('readout')})"))
            continue
        model = cost_models.get(str(r.get("cost_model")))
        curve = cost_curve(r, err, syn, layers.get(key, []), model) if model is not None else None
        tol = _num(r.get("threshold_tolerance"))
        cs = cost_step(c, tol if np.isfinite(tol) else DEFAULT_TOLERANCE,
                       None if curve is None else curve.snn_cost, None if curve is None else curve.ann_cost, B, seed)
        out[key] = ItemCostStep(**base, images=n, interval=cs)
    return out


def coststep_contribution(ctx: Any) -> Any:
    """The per-network table of cost steps with their intervals over images."""
    from .frame import base_name
    from .regressions import fmt
    from .render import Contribution, Section, Table, Text

    sec = Section("The cost step over a resample of the test images")
    items = ctx.cost_steps()
    sec.blocks.append(Text(
        "Each result's settle step (the first step after which the error stays within the tolerance of its final "
        f"value) and the factor at it, with 95 % percentile intervals from {ctx.bootstrap} resamples of its test images "
        "(per-image correctness per step, stored by simulators that return each image's output spikes). The factor is "
        "priced under the result's own cost model at every resampled step (fair presets: exact at the stored cost point, "
        "elsewhere with its per-layer work scaled by the network's SynOps). '-': not available, with the reason. "
        "The robustness table's row 'settle, tolerance max(1 pt, 2 SE of the final error)' is the version of this "
        "uncertainty that needs only the stored error curve."))
    paper = ctx.paper_models
    order = sorted(items.values(), key=lambda i: (base_name(i.model) not in paper, i.model, i.simulator, str(i.seed)))
    have = [i for i in order if i.interval is not None]
    if not have:  # one sentence, not a table of dashes
        reasons = sorted({i.why for i in order})
        sec.blocks.append(Text(f"None of the {len(order)} results has an interval: " + "; ".join(reasons) + "."))
        return Contribution([sec])
    rows = [[i.model, i.simulator, fmt(i.seed), "-" if i.images is None else str(i.images),
             *i.cells(), i.cost_model, i.why] for i in order]
    sec.blocks.append(Table(["model", "simulator", "seed", "images", "cost step [95% CI]", "factor [95% CI]",
                             "cost model", "why not available"], rows, "The cost step and factor over resampled images."))
    import numpy as np

    width = float(np.median([i.interval.step.high - i.interval.step.low for i in have]))
    return Contribution([sec], [f"Cost step: 95 % intervals over test images for {len(have)} of {len(order)} results "
                                f"(median width {width:.0f} steps)."])
