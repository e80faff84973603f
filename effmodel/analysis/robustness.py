"""Robustness: the verdict under every pricing convention, from stored counts.

Nothing is simulated again.  :func:`reprice` prices each stored result
through the cost models the plugins register
(:func:`effmodel.plugins.get_cost_models`), with the ``CostModel`` methods a
fresh run uses (``ann_cost``, ``snn_cost``, and for ``access`` presets
``breakdown`` over the stored per-layer work via
:func:`effmodel.accounting.result_columns`), so a stored result repriced
under a preset equals a fresh run with ``--cost-model`` that preset.

Conventions beyond a preset:

* ``first_layer``: the SNN's analog first layer does real multiply-
  accumulates.  ``excluded`` prices them as nothing (the 2019 rule),
  ``once`` charges what the ANN pays for that layer (``ann_cost`` of the
  first layer alone) once per image, ``every-step`` at every step up to the
  cost point (as INIsim computes it).  Because that charge scales with the
  MAC price, the MAC:SynOp ratio is **not** a common factor once the first
  layer is priced: it can change slopes and the verdict.
* ``neuron_updates``: ``model`` (as the preset prices them: a fresh run
  charges every spiking neuron at every step up to the cost point at
  ``neuron_update``), ``free`` or ``synop`` (one SynOp each).
* ``cost_point`` / ``tolerance`` / ``delta``: the step recomputed from the
  stored per-step error series (:func:`effmodel.threshold.cost_point_step`);
  ``tolerance="2se"`` settles within max(1 point, 2 standard errors of the
  final error over the row's test images), so one image cannot move it;
  an iso-accuracy step never reached is censored (``cost_point_reached = 0``).
* ``mac`` and ``flop_convention``: fields of the preset replaced.
* ``readout="potential"``: the cost point recomputed from the potential
  readout's images correct per step, recorded beside the run's own readout
  (:func:`potential_errors`); results without them get no factor.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from ..errors import UsageError
from .frame import PRIMARY_SIZE, prepare
from .verdict import NAN, BOOTSTRAP, SEED, Interval, sign_word, size_contrast

PRIMARY_COST_MODEL = "report-14x"
PRIMARY_FIRST_LAYER = "once"
NEURON_UPDATES = ("model", "free", "synop")
TWO_SE = "2se"  # tolerance: max(1 point, 2 standard errors of the final error)


def cost_models() -> dict[str, Any]:
    """The cost models the installed plugins register, by name."""
    from ..plugins import get_cost_models

    return get_cost_models()


def _model(cost_model: Any) -> Any:
    if isinstance(cost_model, str):
        from ..plugins import lookup

        return lookup("cost model", cost_models(), cost_model)
    return cost_model


def _series(timesteps: Any) -> dict[tuple[str, str, str], tuple[Any, Any]]:
    import pandas as pd

    if timesteps is None or not len(timesteps):
        return {}
    ts = pd.DataFrame(timesteps).sort_values(["run_id", "model", "simulator", "t"])
    return {tuple(str(k) for k in key): (g["error"].to_numpy(float), g["synops_cumulative"].to_numpy(float))
            for key, g in ts.groupby(["run_id", "model", "simulator"], sort=False)}


def _layer_rows(layers: Any) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    if layers is None or not len(layers) or "ann_dense_ops" not in layers:
        return {}
    return {tuple(str(k) for k in key): g.to_dict("records") for key, g in layers.groupby(["run_id", "model", "simulator"])}


POTENTIAL_EXTRA = "correct_t_potential"


def potential_errors(row: Any) -> Any:
    """The error per step under the ``potential`` readout (the class of the
    output neuron with the highest membrane potential) recorded beside the
    run's own readout: the simulator's ``extra["correct_t_potential"]``
    (images correct per step, summed over batches; Norse records it in every
    run), kept in the row's ``extra_json``.  None when it is not there (a run
    with ``--readout potential`` has it as its error series instead)."""
    import numpy as np

    try:
        extra = json.loads(row.get("extra_json") or "{}")
    except (TypeError, ValueError):
        return None
    sim = extra.get("simulator") if isinstance(extra, dict) else None
    counts = sim.get(POTENTIAL_EXTRA) if isinstance(sim, dict) else None
    n = _num(row.get("num_test"))
    if counts is None or not (math.isfinite(n) and n > 0):
        return None
    try:
        c = np.asarray(counts, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return 1.0 - c / n if c.size else None


def two_se_tolerance(final_error: float, images: float, floor: float = 0.01) -> float:
    """A settle tolerance that does not hinge on one image: at least
    ``floor`` and at least two standard errors of the final error,
    ``2 sqrt(e (1 - e) / N)`` over ``N`` test images."""
    if not (math.isfinite(final_error) and math.isfinite(images) and images > 0):
        return floor
    return max(floor, 2 * math.sqrt(max(final_error * (1 - final_error), 0.0) / images))


def first_weighted(counts: Any) -> tuple[Any, ...]:
    """The layer counts of the network's first conv or dense layer (the one
    that receives the analog input), as a one-layer tuple."""
    for layer in counts.layers:
        if layer.type in ("conv2d", "dense"):
            return (layer,)
    return ()


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def reprice(frame: Any, cost_model: Any, *, first_layer: str | None = None, neuron_updates: str = "model",
            cost_point: str | None = None, tolerance: float | str | None = None, delta: float | None = None,
            flop_convention: str | None = None, mac: float | None = None, readout: str | None = None,
            timesteps: Any = None, layers: Any = None) -> Any:
    """A copy of ``frame`` (stored results) with ``cost_model``, ``total_costs``,
    ``snn_costs``, ``factor`` (and ``threshold_step``, ``synops_at_threshold``,
    ``cost_point_reached`` where the cost point moves) recomputed from stored
    counts under ``cost_model`` (a name or a ``CostModel``) and the
    conventions in the module docstring.  ``readout="potential"``: the cost
    point recomputed from the ``potential`` readout's correct counts per step
    (:func:`potential_errors`; rows without them get no factor).  With every convention at its
    default, the fair-accounting columns are recomputed too, from the stored
    per-layer work, exactly as a fresh run computes them.

    ``timesteps`` / ``layers``: the per-step and per-layer tables (default:
    ``frame.attrs``, where :func:`effmodel.load_results` puts them)."""
    import pandas as pd

    from ..accounting import result_columns, work_from_layer_rows
    from ..threshold import DEFAULT_DELTA, DEFAULT_TOLERANCE, cost_point_step, synops_at_step
    from .curves import counts_of, ops_snn_cost
    from .frame import require

    require(frame, ("run_id", "model", "simulator", "spec_json", "threshold_step", "synops_at_threshold"), "reprice")
    model = _model(cost_model)
    if neuron_updates not in NEURON_UPDATES:
        raise UsageError(f"reprice: neuron_updates must be one of {', '.join(NEURON_UPDATES)}, got {neuron_updates!r}")
    changes: dict[str, Any] = {}
    if mac is not None:
        changes["mac"] = float(mac)
    if flop_convention is not None:
        changes["flop_convention"] = flop_convention
    if first_layer is not None and model.accounting == "access":
        changes["first_layer"] = first_layer
    if changes:
        model = replace(model, **changes)
    own = first_layer is None and neuron_updates == "model" and cost_point is None and tolerance is None and delta is None
    first = first_layer if first_layer is not None else ("excluded" if model.accounting == "ops" else model.first_layer)
    timesteps = frame.attrs.get("timesteps") if timesteps is None else timesteps
    layers = frame.attrs.get("layers") if layers is None else layers
    series, work_rows = _series(timesteps), _layer_rows(layers)
    if readout not in (None, "potential"):
        raise UsageError(f"reprice: readout must be 'potential' (or None: the stored one), got {readout!r}")
    moved = cost_point is not None or tolerance is not None or delta is not None or readout is not None
    out = pd.DataFrame(frame).copy()
    counts_cache: dict[str, Any] = {}
    records = []
    for r in out.to_dict("records"):
        key = (str(r["run_id"]), str(r["model"]), str(r["simulator"]))
        counts = counts_of(r.get("spec_json"), counts_cache)
        new: dict[str, Any] = {"cost_model": model.name}
        step, so = _num(r.get("threshold_step")), _num(r.get("synops_at_threshold"))
        reached = r.get("cost_point_reached")
        if moved:
            s = series.get(key)
            if s is not None and readout is not None and str(r.get("readout")) != readout:
                e = potential_errors(r)  # recorded beside the run's own readout
                s = (e, s[1]) if e is not None and len(e) == len(s[0]) else None
            if s is None or not len(s[0]):
                step, so, reached = float("nan"), float("nan"), None
            else:
                cp = cost_point or "settle"
                if tolerance == TWO_SE:
                    tol = two_se_tolerance(s[0][-1], _num(r.get("num_test")))
                else:
                    tol = tolerance if tolerance is not None else _num(r.get("threshold_tolerance"))
                tol = DEFAULT_TOLERANCE if not math.isfinite(tol) else tol
                st, ok = cost_point_step(s[0], cp, tol, 1.0 - _num(r.get("ann_accuracy")),
                                         delta if delta is not None else DEFAULT_DELTA)
                step, so, reached = float(st), synops_at_step(s[1], st), int(ok)
            new |= {"threshold_step": step, "synops_at_threshold": so, "cost_point_reached": reached}
        if counts is None or not math.isfinite(step) or not math.isfinite(so):
            records.append(new | {"total_costs": float("nan"), "snn_costs": float("nan"), "factor": float("nan")})
            continue
        if model.accounting == "access":
            work = work_from_layer_rows(work_rows.get(key, []), str(r["model"]))
            if work is None or moved:  # per-layer work is stored at the stored cost point only
                records.append(new | {"total_costs": float("nan"), "snn_costs": float("nan"), "factor": float("nan")})
                continue
            cols = result_columns(work, model, counts, cost_point=str(r.get("cost_point") or "settle"),
                                  delta=_num(r.get("cost_point_delta")), reached=bool(_num(r.get("cost_point_reached")) != 0),
                                  accuracy_at_step=_num(r.get("snn_accuracy_at_cost_point")))
            records.append(new | cols)
            continue
        ann = model.ann_cost(counts)
        snn = ops_snn_cost(model, counts, step, so, first, neuron_updates)
        new |= {"total_costs": ann, "snn_costs": snn, "factor": ann / snn if snn > 0 else float("nan")}
        if own:
            work = work_from_layer_rows(work_rows.get(key, []), str(r["model"]))
            if work is not None:
                cols = result_columns(work, model, counts, cost_point=str(r.get("cost_point") or "settle"),
                                      delta=_num(r.get("cost_point_delta")),
                                      reached=bool(_num(r.get("cost_point_reached")) != 0),
                                      accuracy_at_step=_num(r.get("snn_accuracy_at_cost_point")))
                new |= {k: v for k, v in cols.items() if k not in ("total_costs", "snn_costs", "factor")}
        records.append(new)
    upd = pd.DataFrame(records, index=out.index)
    for c in upd.columns:
        out[c] = upd[c]
    out.attrs = dict(frame.attrs)
    return out


# --- conventions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Convention:
    """One way of pricing the stored counts (a row of the robustness table)."""

    label: str
    cost_model: str = PRIMARY_COST_MODEL
    options: dict[str, Any] = field(default_factory=lambda: {"first_layer": PRIMARY_FIRST_LAYER})
    size: str = PRIMARY_SIZE
    guard: bool = True
    needs: str = ""  # what a stored result must hold for this convention (named in the row when some lack it)


def conventions() -> list[Convention]:
    """Every convention of the robustness table, the primary specification first."""
    once = {"first_layer": PRIMARY_FIRST_LAYER}
    return [
        Convention("primary: report-14x, first layer once, settle 1 pt, size neurons"),
        Convention("size: parameters", size="params"),
        Convention("size: MACs", size="macs"),
        Convention("MAC:SynOp 5", options=once | {"mac": 5.0}),
        Convention("MAC:SynOp 32", options=once | {"mac": 32.0}),
        Convention("first layer excluded (the 2019 rule, report-14x as published)", options={"first_layer": "excluded"}),
        Convention("first layer every step (as INIsim computes it)", options={"first_layer": "every-step"}),
        Convention("neuron updates charged (1 SynOp each)", options=once | {"neuron_updates": "synop"}),
        Convention("settle, tolerance 0.5 pt", options=once | {"tolerance": 0.005}),
        Convention("settle, tolerance 2 pt", options=once | {"tolerance": 0.02}),
        Convention("settle, tolerance max(1 pt, 2 SE of the final error)", options=once | {"tolerance": TWO_SE}),
        Convention("iso-accuracy, delta 0.5 pt", options=once | {"cost_point": "iso-accuracy", "delta": 0.005}),
        Convention("iso-accuracy, delta 1 pt", options=once | {"cost_point": "iso-accuracy", "delta": 0.01}),
        Convention("iso-accuracy, delta 2 pt", options=once | {"cost_point": "iso-accuracy", "delta": 0.02}),
        Convention("readout: potential (highest membrane potential)", options=once | {"readout": "potential"},
                   needs="the potential readout's correct counts per step, which Norse records"),
        Convention("snntoolbox FLOP convention", options=once | {"flop_convention": "snntoolbox"}),
        Convention("flagged networks kept (no accuracy guard)", guard=False),
        Convention("fair-45nm-fp32 (dense ANN)", cost_model="fair-45nm-fp32", options={}),
        Convention("fair-45nm-fp32-zs (zero-skipping ANN)", cost_model="fair-45nm-fp32-zs", options={}),
    ]


@dataclass(frozen=True)
class ConventionRow:
    """The verdict under one convention, for one simulator."""

    label: str
    simulator: str
    n: int
    contrast: Interval
    verdict: str
    depth_sign: str
    size_sign: str
    median_factor: float
    share_cheaper: float  # share of architectures with factor > 1
    note: str = ""

    def row(self) -> list[str]:
        med = "-" if not math.isfinite(self.median_factor) else f"{self.median_factor:.3g}"
        share = "-" if not math.isfinite(self.share_cheaper) else f"{100 * self.share_cheaper:.0f} %"
        ci = "-" if not math.isfinite(self.contrast.low) else str(self.contrast)
        return [self.label, str(self.n), ci, self.verdict + (f" ({self.note})" if self.note else ""),
                f"{self.depth_sign} / {self.size_sign}", med, share]


ROW_HEAD = ["convention", "n", "|depth| - |size| [95% CI]", "verdict", "signs depth / size", "median factor",
            "factor > 1"]


def robustness(results: Any, timesteps: Any = None, layers: Any = None, simulator: str | None = None,
               B: int = BOOTSTRAP, seed: int = SEED, convs: Sequence[Convention] | None = None) -> list[ConventionRow]:
    """One :class:`ConventionRow` per convention (and simulator, or only
    ``simulator``), each from the stored counts repriced."""
    import numpy as np

    models = cost_models()
    rows = []
    for conv in convs if convs is not None else conventions():
        if conv.cost_model not in models:
            rows.append(ConventionRow(conv.label, simulator or "-", 0, NAN, "not available", "-", "-",
                                      float("nan"), float("nan"), f"no cost model {conv.cost_model!r} installed"))
            continue
        priced = reprice(results, models[conv.cost_model], timesteps=timesteps, layers=layers, **conv.options)
        preps = prepare(priced, guard=conv.guard)
        for sim, prep in preps.items():
            if simulator is not None and sim != simulator:
                continue
            a = prep.arches
            censored = f"{prep.censored} result(s) censored: cost point not reached" if prep.censored else ""
            if conv.needs:
                lacking = _lacking(priced, sim, conv)
                censored = "; ".join(x for x in (censored, f"{lacking} of {_count(priced, sim)} result(s) lack "
                                                           f"{conv.needs}" if lacking else "") if x)
            if len(a) == 0:
                rows.append(ConventionRow(conv.label, sim, 0, NAN, "no data", "-", "-", float("nan"), float("nan"),
                                          censored or "the input lacks the per-layer work or per-step series needed"))
                continue
            c = size_contrast(prep, conv.size, B, seed)
            lf = a["log_factor"].to_numpy(float)
            rows.append(ConventionRow(conv.label, sim, c.n, c.contrast, c.verdict,
                                      sign_word(c.depth.estimate) if math.isfinite(c.depth.estimate) else "-",
                                      sign_word(c.size_effect.estimate) if math.isfinite(c.size_effect.estimate) else "-",
                                      float(np.exp(np.median(lf))), float(np.mean(lf > 0)),
                                      "; ".join(x for x in (c.note, censored) if x)))
    return rows


def _count(frame: Any, simulator: str) -> int:
    return int((frame["simulator"].astype(str) == simulator).sum())


def _lacking(frame: Any, simulator: str, conv: Convention) -> int:
    """Results of ``simulator`` in ``frame`` that lack what ``conv`` needs."""
    readout = conv.options.get("readout")
    if readout is None:
        return 0
    rows = frame[frame["simulator"].astype(str) == simulator].to_dict("records")
    return sum(1 for r in rows if str(r.get("readout")) != readout and potential_errors(r) is None)


# --- the report's section -------------------------------------------------------------


def robustness_contribution(ctx: Any) -> Any:
    """The robustness table and forest plot of every simulator."""
    from .figures import forest_figure
    from .render import Contribution, Section, Table, Text

    sec = Section("Robustness: the verdict under every convention")
    sec.blocks.append(Text(
        "Every row reprices the stored counts (no re-simulation) through the installed cost models and refits the "
        "primary specification; 'factor > 1' is the share of architectures whose SNN is cheaper. Once the analog "
        "first layer is priced as the MACs it performs, the MAC:SynOp ratio changes each network's SNN cost "
        "differently, so it can move the slopes and the verdict. Rows that need per-layer work or per-step series the "
        "input lacks say 'no data'. The readout row recomputes the cost point from the potential readout's correct "
        "counts per step, which a simulator records beside its own readout (Norse does); it names the results that "
        "lack them."))
    for sim in ctx.preps:
        rows = ctx.robustness(sim)
        fig = forest_figure(rows, f"{sim}: contrast per convention")
        if fig is not None:
            sec.blocks.append(fig)
        sec.blocks.append(Table(ROW_HEAD, [r.row() for r in rows], f"{sim}: robustness"))
    return Contribution([sec])
