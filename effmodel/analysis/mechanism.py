"""The mechanism: which part of the factor carries a depth effect?

``factor ~ ratio x MACs / (synapses x rate x T*)``: the SNN's cost is its
spiking synapses times the SynOps each carries per step times the steps to
the cost point.  Two fits with the primary specification's right-hand side
(depth, log size, dataset and protocol terms; standardised by within-dataset
SDs; the same cluster bootstrap as the verdict) say whether depth acts
through the time to settle (``log T*``, the stored cost-point step) or
through the activity (``log`` of mean SynOps per spiking synapse per step at
the cost point; spiking synapses = real synapses minus the analog first
layer's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .frame import PRIMARY_SIZE, Prepared
from .render import Contribution, Section, Table, Text
from .verdict import BOOTSTRAP, SEED, Interval, bootstrap, design

if TYPE_CHECKING:
    from .report import Context

OUTCOMES = {"log_steps": "log T* (steps to the cost point)",
            "log_activity": "log SynOps per spiking synapse per step"}


@dataclass(frozen=True)
class MechanismFit:
    outcome: str
    n: int
    depth: Interval
    size: Interval
    note: str = ""

    def row(self) -> list[str]:
        if self.note:
            return [OUTCOMES[self.outcome], str(self.n), "-", "-", self.note]
        return [OUTCOMES[self.outcome], str(self.n), str(self.depth), str(self.size), ""]


def outcomes(rows: Any) -> Any:
    """``rows`` with ``log_steps`` and ``log_activity`` (NaN where a count is missing)."""
    import numpy as np
    import pandas as pd

    step = pd.to_numeric(rows.get("threshold_step"), errors="coerce").astype(float)
    so = pd.to_numeric(rows.get("synops_at_threshold"), errors="coerce").astype(float)
    syn = (pd.to_numeric(rows.get("ann_synapses"), errors="coerce")
           - pd.to_numeric(rows.get("synops_input_layer"), errors="coerce").fillna(0)).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return rows.assign(log_steps=np.log(step.where(step > 0)),
                           log_activity=np.log((so / (syn * step)).where((so > 0) & (syn > 0) & (step > 0))))


def mechanism(prep: Prepared, size: str = PRIMARY_SIZE, B: int = BOOTSTRAP, seed: int = SEED) -> list[MechanismFit]:
    """Standardised depth and size effects on each outcome of :data:`OUTCOMES`."""
    nan = Interval(float("nan"), float("nan"), float("nan"))
    fits = []
    needed = ("threshold_step", "synops_at_threshold", "ann_synapses")
    for out in OUTCOMES:
        if any(c not in prep.rows for c in needed):
            fits.append(MechanismFit(out, 0, nan, nan, "counts not in the frame"))
            continue
        rows = outcomes(prep.rows)
        rows = rows.assign(log_factor=rows[out])
        rows = rows[rows["log_factor"].notna()]
        arches = prep.arches[prep.arches["arch"].isin(set(rows["arch"]))]
        if len(arches) < 6:
            fits.append(MechanismFit(out, len(arches), nan, nan, "too few architectures"))
            continue
        p = replace(prep, rows=rows, arches=arches)
        d = design(p, ("depth", f"log_{size}"))
        est, reps = bootstrap(d, B, seed)
        iv = lambda j: _iv(float(est["effects"][0, j]), reps["effects"][:, j])  # noqa: E731
        fits.append(MechanismFit(out, len(arches), iv(0), iv(1)))
    return fits


def _iv(est: float, draws: Any) -> Interval:
    import numpy as np

    draws = draws[np.isfinite(draws)]
    if not draws.size or not math.isfinite(est):
        return Interval(est, float("nan"), float("nan"))
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return Interval(est, float(lo), float(hi))


def mechanism_contribution(ctx: "Context") -> Contribution:
    sec = Section("Mechanism: steps to settle or activity?")
    sec.blocks.append(Text(
        "factor ~ ratio x MACs / (spiking synapses x SynOps per synapse per step x T*). Each outcome is fitted with the "
        "primary specification's terms; effects are per within-dataset SD with 95% cluster-bootstrap CIs. A depth "
        "effect on the factor that shows up in log T* comes from slower settling; one in the activity term from "
        "denser spiking."))
    lines = []
    for sim, prep in ctx.preps.items():
        fits = mechanism(prep, B=ctx.bootstrap, seed=ctx.seed)
        sec.blocks.append(Table(["outcome", "n", "depth effect [95% CI]", f"log {PRIMARY_SIZE} effect [95% CI]", "note"],
                                [f.row() for f in fits], f"{sim}: mechanism fits"))
        steps = fits[0]
        if not steps.note and sim == ctx.headline:
            lines.append(f"Mechanism ({sim}): depth moves log T* by {steps.depth} per SD, the activity by "
                         f"{fits[1].depth}.")
    return Contribution([sec], lines)
