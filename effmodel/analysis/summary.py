"""The first screen: the verdict with its CI and n, the forest plot, the 2019
report's conclusions checked one by one, and where the numbers come from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .render import Contribution, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context
    from .verdict import Interval, Verdict

TITLE = "Summary"


@dataclass(frozen=True)
class Conclusion:
    """One conclusion of the 2019 report and what our data say of it."""

    claim: str
    status: str  # holds / fails / undetermined
    evidence: str

    def row(self) -> list[str]:
        return [self.claim, self.status, self.evidence]


def _status(iv: "Interval", holds_if_positive: bool) -> str:
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return "undetermined"
    if iv.low > 0:
        return "holds" if holds_if_positive else "fails"
    if iv.high < 0:
        return "fails" if holds_if_positive else "holds"
    return "undetermined"


def shallow_cheaper(v: "Verdict", prep: Any, B: int, seed: int) -> Conclusion:
    """Networks with up to 3 hidden layers: geometric-mean factor and its
    bootstrap CI over architectures (holds if the CI lies above 1)."""
    import numpy as np

    from .verdict import Interval

    claim = "Shallow SNNs (up to 3 hidden layers) are cheaper than their ANNs"
    a = prep.arches
    lf = a.loc[a["depth"] <= 3, "log_factor"].to_numpy(float)
    if lf.size < 2:
        return Conclusion(claim, "undetermined", f"{lf.size} shallow architecture(s)")
    rng = np.random.default_rng(seed)
    draws = lf[rng.integers(0, lf.size, (B, lf.size))].mean(1)
    lo, hi = np.quantile(draws, [0.025, 0.975])
    iv = Interval(float(lf.mean()), float(lo), float(hi))
    return Conclusion(claim, _status(iv, True),
                      f"geometric-mean factor {math.exp(iv.estimate):.3g} [{math.exp(iv.low):.3g}, {math.exp(iv.high):.3g}] "
                      f"over {lf.size} architectures; {int((lf > 0).sum())} of {lf.size} above 1")


def conclusions(v: "Verdict", prep: Any, B: int, seed: int) -> list[Conclusion]:
    """The 2019 report's conclusions (its section 4), each checked on ``v``."""
    out = [shallow_cheaper(v, prep, B, seed)]
    d = v.primary.depth
    out.append(Conclusion("The factor drops with every added convolutional or dense layer",
                          _status(d, False), f"depth effect {d} per within-dataset SD (log factor)"))
    if v.layers is not None:
        out.append(Conclusion("Additional convolutional layers had more impact than dense layers",
                              _status(v.layers.contrast, True), v.layers.sentence()))
    else:
        out.append(Conclusion("Additional convolutional layers had more impact than dense layers", "undetermined",
                              "conv and dense depth do not both vary"))
    status = {"depth dominates": "holds", "size dominates": "fails"}.get(v.verdict, "undetermined")
    out.append(Conclusion("Depth had more impact on the efficiency than the total number of neurons", status,
                          f"|depth| - |neurons| = {v.primary.contrast} (n = {v.primary.n})"))
    return out


def survival_line(rows: list[Any]) -> str:
    """How the verdict fares under the other conventions of the robustness table."""
    from .verdict import VERDICTS

    primary, others = rows[0], rows[1:]
    counts = {v: sum(1 for r in others if r.verdict == v) for v in VERDICTS}
    missing = len(others) - sum(counts.values())
    return (f"Under the {len(others)} other conventions of the robustness table: "
            + ", ".join(f"{v} in {k}" for v, k in counts.items()) + (f", no data in {missing}" if missing else "")
            + f" (primary: {primary.verdict}).")


def first_screen(ctx: "Context", lines: list[str]) -> Contribution:
    """The summary section; ``lines``: the other sections' summary lines."""
    from .figures import forest_figure
    from .frame import base_name
    from .provenance import short_provenance

    res = ctx.inputs.results
    sec = Section(TITLE)
    if not ctx.verdicts:
        sec.blocks.append(Text("Verdict: undetermined (no simulator has results to fit)."))
    for sim, v in ctx.verdicts.items():
        head = "Verdict" if sim == ctx.headline else "Also"
        sec.blocks.append(Text(f"{head}: {v.sentence()}"))
    if ctx.headline is not None:
        prep, v = ctx.preps[ctx.headline], ctx.verdicts[ctx.headline]
        a = prep.arches
        cheaper = int((a["log_factor"] > 0).sum())
        sec.blocks.append(Text(f"SNN cheaper in {cheaper} of {len(a)} architectures ({ctx.headline}, primary "
                               f"specification)."))
        rows = ctx.robustness(ctx.headline)
        sec.blocks.append(Text(survival_line(rows)))
        fig = forest_figure(rows, f"{ctx.headline}: contrast per convention", "summary")
        if fig is not None:
            sec.blocks.append(fig)
        sec.blocks.append(Table(["the 2019 report says", "here", "evidence"],
                                [c.row() for c in conclusions(v, prep, ctx.bootstrap, ctx.seed)],
                                f"The 2019 report's conclusions, checked on {ctx.headline} (primary specification)."))
    sec.blocks.append(Text(
        f"{len(res)} results of {res['model'].map(base_name).nunique()} model names on "
        f"{', '.join(sorted(res['dataset'].astype(str).unique()))}, simulators "
        f"{', '.join(sorted(res['simulator'].astype(str).unique()))}, from {res['run_id'].nunique()} run(s)."))
    for line in lines:
        sec.blocks.append(Text(line))
    for line in short_provenance(ctx):
        sec.blocks.append(Text(line))
    return Contribution([sec])
