"""Codes and ensembles (issue 24): the 2019 report's two proposals, measured.

The report (section 3.4) proposes sparse computation (adaptive spiking
neurons, Zambrano et al.; time to first spike is the other sparse code
effmodel has) and homogeneous ensembles of small, shallow networks.  This
section reads both from the stored results:

- **codes**: per reference model and simulator, every code present (the
  ``coding`` column and the neuron options in ``simulator_options``:
  ``rate``, ``rate neuron=adaptive``, ``rate reset=zero``, ``ttfs``) with its
  accuracy, SynOps and fair-preset SNN energy per image at its cost point,
  against the same model's rate-coded IF row;
- **ensembles**: rows ``ensemble:<Member>x<n>`` against the deeper reference
  networks of their dataset at iso-accuracy (the SynOps each needs to reach
  the lower of the two final accuracies, read from the per-step series);
- **the proposals**: what the data say, with Rueckauer & Liu 2018's TTFS
  figure (7-10x fewer operations than rate coding at under 1 point loss on
  MNIST) beside effmodel's.

With nothing but rate-coded IF rows and no ensemble the section is left out.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .frame import base_name
from .render import Contribution, Figure, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context

ENSEMBLE = re.compile(r"^ensemble:(?P<member>.+)x(?P<n>\d+)$")
NEURON_OPTIONS = ("neuron", "reset", "mf")  # simulator options that change the neuron, hence the code
DEFAULT_NEURON = {"neuron": ("if",), "reset": ("subtract",)}  # the rate-coded IF neuron of the report
ISO_POINTS = 1.0  # "at iso-accuracy", "no accuracy loss": within one point
_ROUNDING = 1e-9  # accuracies are fractions of images: 0.92 - 0.93 is -1.0000000000000009 points
RUECKAUER_LIU = (7.0, 10.0, 1.0)  # TTFS vs rate on MNIST: 7-10x fewer operations at under 1 point loss
RATE = "rate"


def code_label(coding: Any, simulator_options: Any) -> str:
    """The code of a results row: its coding (empty: rate) and its non-default neuron options."""
    code = coding if isinstance(coding, str) and coding else RATE
    try:
        options = json.loads(simulator_options) if isinstance(simulator_options, str) and simulator_options else {}
    except ValueError:
        options = {}
    extra = [f"{k}={options[k]}" for k in NEURON_OPTIONS
             if k in options and options[k] not in DEFAULT_NEURON.get(k, ())]
    return " ".join([code, *extra])


def ensemble_parts(model: str) -> tuple[str, int] | None:
    """``(member, n)`` of an ensemble's model name ``ensemble:<Member>x<n>``, else None."""
    m = ENSEMBLE.match(base_name(model))
    return (m["member"], int(m["n"])) if m else None


@dataclass(frozen=True)
class CodeRow:
    """One stored result as this section reads it (per image, at its cost point)."""

    model: str
    dataset: str
    simulator: str  # the registered simulator (variants of it, other codes and options, are compared with each other)
    code: str
    run_id: str
    depth: float
    duration: float
    cost_point: str  # settle or iso-accuracy (rows compare only at the same one)
    step: float  # the cost point's step
    ann_accuracy: float
    accuracy: float  # SNN accuracy at the cost point
    final_accuracy: float  # SNN accuracy at the last step
    synops: float  # SynOps per image up to the cost point
    synops_to_decision: float  # decision-time codes: SynOps per decided image up to its own decision step
    energy: float  # fair-preset SNN energy per image at the cost point, pJ
    fair_factor: float

    @property
    def base(self) -> str:
        return base_name(self.model)


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def _decision_synops(extra_json: Any, images: float) -> float:
    try:
        extra = json.loads(extra_json) if isinstance(extra_json, str) and extra_json else {}
        sim = extra.get("simulator", {}) if isinstance(extra, dict) else {}
        total, undecided = float(sim["synops_to_decision"]), float(sim.get("undecided_images", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        return math.nan
    decided = images - undecided
    return total / decided if decided > 0 else math.nan


def _fair(inputs: Any) -> tuple[list[float], list[float]]:
    """Per results row: the fair preset's SNN energy per image (pJ) and factor (NaN without per-layer work)."""
    from ..accounting import FAIR_PRESET
    from ..plugins import get_cost_models
    from .fair import fair_frame

    n = len(inputs.results)
    fair = get_cost_models().get(FAIR_PRESET)
    if fair is None or inputs.layers is None or inputs.layers.empty or "ann_dense_ops" not in inputs.layers:
        return [math.nan] * n, [math.nan] * n
    frame = fair_frame(inputs)
    energy = [fair.breakdown(w).snn.total if w is not None else math.nan for w in frame.attrs["works"]]
    return energy, [_num(v) for v in frame["fair"]]


def code_rows(inputs: Any) -> list[CodeRow]:
    """Every results row as a :class:`CodeRow`; of rows repeating (model, simulator, code, cost point), the newest."""
    res = inputs.results
    if res is None or res.empty:
        return []
    energy, factor = _fair(inputs)
    rows: dict[tuple[str, str, str], tuple[str, CodeRow]] = {}
    for i, r in enumerate(res.to_dict("records")):
        acc_cp = _num(r.get("snn_accuracy_at_cost_point"))
        row = CodeRow(
            model=str(r["model"]), dataset=str(r.get("dataset", "")), simulator=_base_simulator(r),
            code=code_label(r.get("coding"), r.get("simulator_options")), run_id=str(r.get("run_id", "")),
            depth=_num(r.get("depth")), duration=_num(r.get("duration")),
            cost_point=r.get("cost_point") if isinstance(r.get("cost_point"), str) and r.get("cost_point") else "settle",
            step=_num(r.get("threshold_step")),
            ann_accuracy=_num(r.get("ann_accuracy")), accuracy=acc_cp if math.isfinite(acc_cp) else _num(r.get("snn_accuracy")),
            final_accuracy=_num(r.get("snn_accuracy")), synops=_num(r.get("synops_at_threshold")),
            synops_to_decision=_decision_synops(r.get("extra_json"), _num(r.get("num_test"))),
            energy=energy[i], fair_factor=factor[i])
        key = (row.model, row.simulator, row.code, row.cost_point)
        created = str(r.get("created") or "")
        if key not in rows or created >= rows[key][0]:
            rows[key] = (created, row)
    return [row for _, row in rows.values()]


def _base_simulator(r: Mapping[str, Any]) -> str:
    """The registered simulator of a results row: its ``base_simulator`` when the
    report labelled it a variant (``norse [coding=ttfs]``), else ``simulator``."""
    base = r.get("base_simulator")
    return str(base) if isinstance(base, str) and base else str(r["simulator"])


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def _fmt(v: float, spec: str = ".3g", none: str = "-") -> str:
    return format(v, spec) if math.isfinite(v) else none


def _pct(v: float) -> str:
    return _fmt(100 * v, ".1f")


@dataclass(frozen=True)
class CodeComparison:
    """One code against the rate-coded IF row of the same model and simulator."""

    row: CodeRow
    baseline: CodeRow

    @property
    def synops_saving(self) -> float:  # x fewer SynOps than rate coding (> 1: fewer)
        return _ratio(self.baseline.synops, self.row.synops)

    @property
    def decision_saving(self) -> float:
        return _ratio(self.baseline.synops, self.row.synops_to_decision)

    @property
    def energy_saving(self) -> float:
        return _ratio(self.baseline.energy, self.row.energy)

    @property
    def points(self) -> float:  # accuracy change vs rate coding, points (negative: a loss)
        return 100 * (self.row.accuracy - self.baseline.accuracy)

    @property
    def holds(self) -> bool:  # sparser at no more than ISO_POINTS accuracy loss
        return self.synops_saving > 1 and self.points >= -ISO_POINTS - _ROUNDING


def code_comparisons(rows: Sequence[CodeRow]) -> list[CodeComparison]:
    """Every non-rate code of a model and simulator that also has a rate-coded IF row at the same cost point."""
    def key(r: CodeRow) -> tuple[str, str, str]:
        return r.base, r.simulator, r.cost_point

    base = {key(r): r for r in rows if r.code == RATE and ensemble_parts(r.model) is None}
    return [CodeComparison(r, base[key(r)]) for r in rows
            if r.code != RATE and key(r) in base and ensemble_parts(r.model) is None]


def synops_to_reach(timesteps: Any, row: CodeRow, accuracy: float) -> float:
    """SynOps per image at the first step where ``row``'s accuracy reaches ``accuracy`` (NaN: never, or no series)."""
    if timesteps is None or timesteps.empty:
        return math.nan
    sims = timesteps["simulator"].astype(str).str.replace(r" \[.*\]$", "", regex=True)  # variant labels dropped
    ts = timesteps[(timesteps["run_id"].astype(str) == row.run_id) & (timesteps["model"].astype(str) == row.model)
                   & (sims == row.simulator)].sort_values("t")
    reached = ts[1 - ts["error"].astype(float) >= accuracy - 1e-12]
    return float(reached["synops_cumulative"].iloc[0]) if len(reached) else math.nan


@dataclass(frozen=True)
class EnsembleComparison:
    """An ensemble against one deeper reference network of its dataset (same simulator and code)."""

    ensemble: CodeRow
    deep: CodeRow
    target: float  # the lower of the two final accuracies
    ensemble_synops: float  # per image, to reach ``target``
    deep_synops: float

    @property
    def synops_saving(self) -> float:  # > 1: the ensemble needs fewer SynOps at iso-accuracy
        return _ratio(self.deep_synops, self.ensemble_synops)

    @property
    def energy_saving(self) -> float:  # fair energy at each one's cost point
        return _ratio(self.deep.energy, self.ensemble.energy)

    @property
    def points(self) -> float:  # final accuracy, ensemble minus deep network, points
        return 100 * (self.ensemble.final_accuracy - self.deep.final_accuracy)

    @property
    def holds(self) -> bool:  # as accurate (within ISO_POINTS) and cheaper
        return self.points >= -ISO_POINTS - _ROUNDING and self.synops_saving > 1


def ensemble_comparisons(rows: Sequence[CodeRow], timesteps: Any, reference_models: Iterable[str]) -> list[EnsembleComparison]:
    """Each ensemble row against every reference network of its dataset deeper than its member."""
    reference = set(reference_models)
    out = []
    for e in rows:
        parts = ensemble_parts(e.model)
        if parts is None:
            continue
        member = parts[0]
        for d in rows:
            if (d.base not in reference or d.base == member or d.dataset != e.dataset or d.simulator != e.simulator
                    or d.code != e.code or d.cost_point != e.cost_point or ensemble_parts(d.model) is not None):
                continue
            if math.isfinite(e.depth) and math.isfinite(d.depth) and d.depth <= e.depth:
                continue  # not deeper than the member: not the comparison the proposal makes
            target = min(e.final_accuracy, d.final_accuracy)
            es, ds = synops_to_reach(timesteps, e, target), synops_to_reach(timesteps, d, target)
            if not (math.isfinite(es) and math.isfinite(ds)):  # no per-step series: the cost points
                es, ds = e.synops, d.synops
            out.append(EnsembleComparison(e, d, target, es, ds))
    return out


def proposals(codes: Sequence[CodeComparison], ensembles: Sequence[EnsembleComparison]) -> list[str]:
    """Sentences: does each of the 2019 report's proposals hold on these data, and how TTFS compares
    with Rueckauer & Liu 2018."""
    lo, hi, bar = RUECKAUER_LIU
    out = []
    sparse = [c for c in codes if c.row.code.startswith("ttfs") or "neuron=adaptive" in c.row.code]
    if not sparse:
        out.append("Sparse computation (adaptive neurons, time to first spike): no data yet (no ttfs or "
                   "neuron=adaptive result beside a rate-coded one of the same model and simulator).")
    else:
        by_code: dict[str, list[CodeComparison]] = {}
        for c in sparse:
            by_code.setdefault(c.row.code, []).append(c)
        parts = []
        for code, cs in sorted(by_code.items()):
            held = sum(c.holds for c in cs)
            savings = [c.synops_saving for c in cs if math.isfinite(c.synops_saving)]
            points = [c.points for c in cs if math.isfinite(c.points)]
            rng = (f"{min(savings):.3g}-{max(savings):.3g}x" if len(savings) > 1 else f"{savings[0]:.3g}x") if savings else "?"
            prng = (f"{min(points):+.1f} to {max(points):+.1f}" if len(points) > 1 else f"{points[0]:+.1f}") if points else "?"
            parts.append(f"{code}: sparser at no more than {ISO_POINTS:g} point lost in {held} of {len(cs)} "
                         f"(model, simulator) pairs ({rng} fewer SynOps than rate coding, accuracy {prng} points)")
        verdict = "holds" if any(c.holds for c in sparse) else "does not hold"
        out.append(f"Sparse computation {verdict} on these data: " + "; ".join(parts) + ".")
    mnist_ttfs = [c for c in codes if c.row.code.startswith("ttfs") and c.row.dataset.lower() == "mnist"]
    if mnist_ttfs:
        items = []
        for c in mnist_ttfs:
            s = c.synops_saving
            where = ("below" if s < lo else "above" if s > hi else "within") if math.isfinite(s) else "not comparable to"
            loss = "within" if c.points >= -bar - _ROUNDING else "outside"
            dec = f", {_fmt(c.decision_saving)}x up to each image's decision" if math.isfinite(c.decision_saving) else ""
            items.append(f"{c.row.model} ({c.row.simulator}, T {_fmt(c.row.duration, '.0f')}): {_fmt(s)}x fewer SynOps "
                         f"at the cost point{dec}, accuracy {c.points:+.1f} points: the saving is {where} their range, "
                         f"the loss {loss} their bar")
        out.append(f"Rueckauer & Liu 2018 report TTFS on MNIST with {lo:g}-{hi:g}x fewer operations than rate coding "
                   f"at under {bar:g} point accuracy loss. effmodel: " + "; ".join(items) + ".")
    else:
        out.append("TTFS against Rueckauer & Liu 2018 (7-10x fewer operations at under 1 point loss on MNIST): "
                   "no data yet (no MNIST ttfs result beside a rate-coded one).")
    if not ensembles:
        out.append("Ensembles of shallow networks: no data yet (no ensemble:<Member>x<n> result beside a deeper "
                   "reference network of its dataset, simulator and code).")
    else:
        held = [c for c in ensembles if c.holds]
        verdict = "holds" if held else "does not hold"
        best = max(ensembles, key=lambda c: c.synops_saving if math.isfinite(c.synops_saving) else -math.inf)
        out.append(f"Ensembles of shallow networks: the proposal {verdict} on these data: in {len(held)} of "
                   f"{len(ensembles)} comparisons an ensemble is as accurate as the deeper network (within "
                   f"{ISO_POINTS:g} point) with fewer SynOps at iso-accuracy (best: {best.ensemble.model} vs "
                   f"{best.deep.model}, {_fmt(best.synops_saving)}x, accuracy {best.points:+.1f} points).")
    return out


def _code_table(comparisons: Sequence[CodeComparison], rows: Sequence[CodeRow], shown: set[str]) -> Table:
    by_row = {id(c.row): c for c in comparisons}
    body = []
    for r in sorted((r for r in rows if r.base in shown and ensemble_parts(r.model) is None),
                    key=lambda r: (r.dataset, r.base, r.simulator, r.cost_point, r.code != RATE, r.code)):
        c = by_row.get(id(r))
        body.append([r.model, r.simulator, r.code, f"{r.cost_point} {_fmt(r.step, '.0f')} / {_fmt(r.duration, '.0f')}",
                     _pct(r.ann_accuracy), _pct(r.accuracy), _fmt(r.synops), _fmt(r.synops_to_decision),
                     _fmt(r.energy / 1e3), _fmt(r.fair_factor),
                     _fmt(c.synops_saving) if c else "", _fmt(c.energy_saving) if c else "",
                     f"{c.points:+.1f}" if c and math.isfinite(c.points) else ""])
    return Table(["model", "sim", "code", "cost point, step / T", "ANN acc %", "SNN acc % at cost step", "SynOps / image",
                  "SynOps / image to decision", "fair SNN energy nJ / image", "fair factor",
                  "x fewer SynOps than rate", "x less fair energy than rate", "accuracy vs rate, points"], body,
                 "Per image at each result's cost point (its settle or iso-accuracy step). 'To decision': a "
                 "decision-time code's SynOps up to each image's own decision step, averaged over the images that "
                 "decided. Fair energy: the fair-45nm-fp32 preset, SNN side ('-': stored without per-layer work). "
                 "The last three columns compare with the rate-coded IF row of the same model, simulator and cost "
                 "point.")


def _code_figure(rows: Sequence[CodeRow], shown: set[str]) -> Figure | None:
    """Accuracy against SynOps and against fair SNN energy per image, one marker per code."""
    from .figures import _plt, _png

    pts = [r for r in rows if r.base in shown and ensemble_parts(r.model) is None
           and math.isfinite(r.synops) and r.synops > 0 and math.isfinite(r.accuracy)]
    if not pts:
        return None
    plt = _plt()
    codes = sorted({r.code for r in pts}, key=lambda c: (c != RATE, c))
    markers = "o^sDvP*X"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, value, label in ((axes[0], lambda r: r.synops, "SynOps per image at the cost point"),
                             (axes[1], lambda r: r.energy / 1e3, "fair SNN energy per image at the cost point, nJ")):
        for k, code in enumerate(codes):
            mine = [r for r in pts if r.code == code and math.isfinite(value(r)) and value(r) > 0]
            if mine:
                ax.scatter([value(r) for r in mine], [100 * r.accuracy for r in mine], marker=markers[k % len(markers)],
                           label=code, s=40)
                for r in mine:
                    ax.annotate(f"{r.base} ({r.simulator})", (value(r), 100 * r.accuracy), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # decades only: minor labels overlap
        ax.set_xlabel(label)
        ax.set_ylabel("SNN accuracy % at the cost point")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return Figure("codes-accuracy-cost", _png(fig),
                  "Accuracy against cost per code (left: SynOps; right: the fair-45nm-fp32 preset's SNN energy, "
                  "drawn only for results with per-layer work). Up and to the left is better.")


def _ensemble_table(comparisons: Sequence[EnsembleComparison]) -> Table:
    body = [[c.ensemble.model, c.deep.model, c.ensemble.dataset, c.ensemble.simulator, c.ensemble.code,
             _pct(c.ensemble.final_accuracy), _pct(c.deep.final_accuracy), _pct(c.target),
             _fmt(c.ensemble_synops), _fmt(c.deep_synops), _fmt(c.synops_saving),
             _fmt(c.ensemble.energy / 1e3), _fmt(c.deep.energy / 1e3), _fmt(c.energy_saving)]
            for c in sorted(comparisons, key=lambda c: (c.ensemble.dataset, c.ensemble.model, c.deep.model))]
    return Table(["ensemble", "deep network", "dataset", "sim", "code", "ensemble acc %", "deep acc %",
                  "iso-accuracy target %", "ensemble SynOps / image", "deep SynOps / image", "x fewer SynOps (ensemble)",
                  "ensemble fair nJ / image", "deep fair nJ / image", "x less fair energy (ensemble)"], body,
                 "Iso-accuracy: each network's SynOps per image at the first step where its accuracy reaches the "
                 "lower of the two final accuracies (from the stored per-step series; without one, at the cost "
                 "points). Fair energy at each one's cost point. Deep networks: the reference networks of the "
                 "ensemble's dataset deeper than its member, with the same simulator, code and cost point.")


def codes_sections(inputs: Any, reference_models: Iterable[str] | None = None) -> Contribution:
    """The section from the stored results (``inputs``: :class:`effmodel.analysis.frame.Inputs`);
    ``reference_models``: the models of the codes table (default: every model that is no ensemble)."""
    rows = code_rows(inputs)
    codes = code_comparisons(rows)
    has_codes = any(r.code != RATE for r in rows)
    has_ensembles = any(ensemble_parts(r.model) is not None for r in rows)
    if not has_codes and not has_ensembles:
        return Contribution()
    reference = set(reference_models) if reference_models else {r.base for r in rows if ensemble_parts(r.model) is None}
    ensembles = ensemble_comparisons(rows, inputs.timesteps, reference)
    sec = Section("Codes and ensembles")
    sec.blocks.append(Text(
        "The 2019 report's two proposals (its section 3.4), measured like everything else: sparse computation "
        "(adaptive spiking neurons after Zambrano et al. 2019, and time to first spike after Rueckauer & Liu 2018) "
        "and ensembles of small, shallow networks. A code is the result's coding with its non-default neuron "
        "options (simulator_options)."))
    if has_codes:
        sec.blocks.append(_code_table(codes, rows, reference))
        figure = _code_figure(rows, reference)
        if figure is not None:
            sec.blocks.append(figure)
    if has_ensembles:
        sec.blocks.append(_ensemble_table(ensembles) if ensembles else Text(
            "Ensembles are stored, but no deeper reference network of the same dataset, simulator and code is."))
    lines = proposals(codes, ensembles)
    sec.blocks.append(Text("Do the report's two proposals hold? " + " ".join(lines)))
    return Contribution([sec], ["Codes and ensembles: " + lines[0]])


def codes_contribution(ctx: "Context") -> Contribution:
    """The report section "Codes and ensembles" (nothing when every result is rate-coded IF and none an ensemble)."""
    return codes_sections(ctx.inputs, ctx.paper_models or None)
