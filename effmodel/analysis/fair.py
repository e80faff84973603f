"""Fair accounting (issue 13): every stored result priced by the report's
rule and by the fair presets from its stored per-layer work, break-even
ratios, and the per-layer energy of the reference models.  Cost models come
from the plugin registry (:func:`effmodel.plugins.get_cost_models`)."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .frame import Inputs, base_name
from .render import Contribution, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context


_COUNTED = {
    "report-14x": ("ANN: FLOPs/2 x 14 + FLOPs/2 x 1 = 15 x MACs (dense; each MAC's add charged twice). "
                   "SNN: SynOps up to the cost point at 1.",
                   "memory traffic, SNN neuron updates, the SNN's analog first layer, ANN zero skipping, pooling"),
    "fair-45nm-fp32": ("Both sides at 45 nm fp32 (Horowitz 2014, Fig. 1.1.9): MACs over real taps, pooling, ANN "
                       "neuron activations and SNN neuron updates, the SNN's first layer computed once, and every "
                       "weight, activation, membrane and spike access at the SRAM/DRAM energy of the tensor's size.",
                       "control, routing between cores, static (leakage) power, reuse of weights in registers "
                       "(every MAC and SynOp re-reads its weight), latency"),
    "fair-45nm-fp32-zs": ("As fair-45nm-fp32, with the ANN (and the SNN's analog input) skipping every MAC whose "
                          "input is zero, measured on the simulated images.",
                          "as fair-45nm-fp32; the cost of finding the nonzeros"),
}


def fair_frame(inp: Inputs) -> Any:
    """The results with the report's and the fair presets' factors, recomputed
    from each result's stored per-layer work (NaN where a result predates it)."""
    import pandas as pd

    from ..accounting import FAIR_PRESET, FAIR_ZS_PRESET, work_from_layer_rows
    from ..counting import count_network
    from ..plugins import get_cost_models
    from ..specs import spec_from_dict

    presets = get_cost_models()
    r14, fair, fzs = presets.get("report-14x"), presets.get(FAIR_PRESET), presets.get(FAIR_ZS_PRESET)
    res = inp.results.copy()
    groups = {k: g.to_dict("records") for k, g in inp.layers.groupby(["run_id", "model", "simulator"])} \
        if inp.layers is not None and not inp.layers.empty and "ann_dense_ops" in inp.layers else {}
    cols: dict[str, list[float]] = {c: [] for c in (
        "f14", "be14", "fair", "fair_lo", "fair_hi", "fair_be", "fair_zs", "fair_zs_lo", "fair_zs_hi",
        "fair_snn_mem_share", "fair_ann_mem_share")}
    works = []
    for r in res.to_dict("records"):
        work = work_from_layer_rows(groups.get((str(r["run_id"]), str(r["model"]), str(r["simulator"])), []), str(r["model"]))
        try:
            counts = count_network(spec_from_dict(json.loads(r.get("spec_json") or "")))
        except (UsageError, ValueError, TypeError, KeyError):
            counts = None
        works.append(work)
        nan = float("nan")
        if work is None or None in (fair, fzs):
            for c in cols:
                cols[c].append(nan)
            continue
        if r14 is not None and counts is not None:
            cols["f14"].append(r14.breakdown(work, counts).factor)
            be = r14.break_even_ratio(work, counts)
            cols["be14"].append(nan if be is None else be)
        else:
            cols["f14"].append(nan)
            cols["be14"].append(nan)
        b = fair.breakdown(work)
        lo, hi = fair.factor_interval(work)
        be = fair.break_even_ratio(work)
        zb = fzs.breakdown(work)
        zlo, zhi = fzs.factor_interval(work)
        cols["fair"].append(b.factor)
        cols["fair_lo"].append(lo)
        cols["fair_hi"].append(hi)
        cols["fair_be"].append(nan if be is None else be)
        cols["fair_zs"].append(zb.factor)
        cols["fair_zs_lo"].append(zlo)
        cols["fair_zs_hi"].append(zhi)
        cols["fair_snn_mem_share"].append(b.snn.memory / b.snn.total if b.snn.total else nan)
        cols["fair_ann_mem_share"].append(b.ann.memory / b.ann.total if b.ann.total else nan)
    for c, v in cols.items():
        res[c] = pd.to_numeric(pd.Series(v, index=res.index), errors="coerce")
    res.attrs["works"] = works
    return res


def _rng(v: float, lo: float, hi: float) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v:.3g}" if abs(hi - lo) <= 1e-9 * max(abs(v), 1) else f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def _be(v: float) -> str:
    if not math.isfinite(v):
        return "none"
    return f"{v:.3g}" if v >= 0 else f"{v:.2g} (any ratio)"


def fair_contribution(ctx: "Context") -> Contribution:
    """Per network: the report's factor beside the fair presets', break-even
    ratios and what each counts; per-layer ANN vs SNN energy of the reference
    models; the depth-vs-size verdict under each.  Returns sections and summary lines."""
    from ..accounting import FAIR_PRESET
    from ..plugins import get_cost_models
    from .frame import prepare
    from .verdict import verdict_of

    inp, paper_models = ctx.inputs, ctx.paper_models
    sec = Section("Fair accounting: the same rules for the ANN and the SNN")
    res = fair_frame(inp)
    have = res["fair"].notna()
    if not have.any():
        sec.blocks.append(Text("No result in the input carries per-layer work (they were stored before fair "
                               "accounting existed): rerun `effmodel run` to get this section."))
        return Contribution([sec])
    sec.blocks.append(Text(
        "The report's rule (report-14x) prices only the ANN's MACs and the SNN's SynOps. The fair presets price both "
        "networks by one access model (effmodel.counting) and one 45 nm energy table, memory included. Factors are "
        "ANN / SNN at each result's cost point (the step its SNN costs are taken at; its accuracy there is shown). "
        "Intervals come from the DRAM range 1.3-2.6 nJ, propagated exactly. Break-even: the MAC:SynOp energy ratio "
        "at which the factor is 1, every other energy fixed; a negative value means the SNN is cheaper at any ratio, "
        "'none' that no ratio makes it cheaper."))
    sec.blocks.append(Table(["cost model", "counts", "leaves out"], [[k, v[0], v[1]] for k, v in _COUNTED.items()],
                            "What each cost model counts."))
    rows = []
    for r in res[have].to_dict("records"):
        step = f"{int(r['threshold_step'])} / {int(r['duration'])}" if r.get("threshold_step") == r.get("threshold_step") else "-"
        acc = r.get("snn_accuracy_at_cost_point")
        rows.append([str(r["model"]), str(r["simulator"]), str(r.get("cost_point") or "settle"), step,
                     f"{100 * acc:.1f}" if acc == acc and acc is not None else "-",
                     _rng(r["f14"], r["f14"], r["f14"]), _be(r["be14"]),
                     _rng(r["fair"], r["fair_lo"], r["fair_hi"]), _rng(r["fair_zs"], r["fair_zs_lo"], r["fair_zs_hi"]),
                     _be(r["fair_be"]), f"{100 * r['fair_ann_mem_share']:.0f} / {100 * r['fair_snn_mem_share']:.0f}"])
    sec.blocks.append(Table(["model", "sim", "cost point", "step / T", "SNN acc % there", "factor report-14x",
                             "break-even (report rules)", f"factor {FAIR_PRESET}", "factor zero-skipping ANN",
                             "break-even MAC:SynOp (fair)", "memory share % ANN / SNN (fair)"], rows,
                            "Factor = ANN cost / SNN cost per network; above 1 the SNN is cheaper."))
    n = int(have.sum())
    cheaper14 = int((res.loc[have, "f14"] > 1).sum())
    cheaper = int((res.loc[have, "fair"] > 1).sum())
    cheaper_zs = int((res.loc[have, "fair_zs"] > 1).sum())
    line = (f"SNN cheaper in {cheaper14} of {n} results under report-14x, {cheaper} under {FAIR_PRESET} (dense ANN), "
            f"{cheaper_zs} with a zero-skipping ANN")
    sec.blocks.append(Text(line + "."))
    verdicts: dict[str, dict[str, str]] = {}
    for col in ("f14", "fair", "fair_zs"):
        for sim, prep in prepare(res[have], factor_column=col).items():
            v = verdict_of(prep, B=ctx.bootstrap, seed=ctx.seed)
            verdicts.setdefault(sim, {})[col] = v.primary.sentence()
    vrows = [[sim, v.get("f14", "-"), v.get("fair", "-"), v.get("fair_zs", "-")] for sim, v in sorted(verdicts.items())]
    if vrows:
        sec.blocks.append(Table(["simulator", "report-14x", FAIR_PRESET, "zero-skipping ANN"], vrows,
                                "Depth vs size (the primary specification) with each cost model's factor."))
    summary = [line]
    # per-layer energy of the reference models
    layer_sec = Section("Per-layer energy, ANN vs SNN (fair preset)")
    fair = get_cost_models()[FAIR_PRESET]
    shown = 0
    for r, work in zip(res.to_dict("records"), res.attrs["works"]):
        if work is None or base_name(str(r["model"])) not in paper_models:
            continue
        b = fair.breakdown(work)
        lrows = [[l.name, l.type, f"{l.ann_split[0] / 1e3:.4g}", f"{l.ann_split[1] / 1e3:.4g}",
                  f"{l.snn_split[0] / 1e3:.4g}", f"{l.snn_split[1] / 1e3:.4g}"] for l in b.layers]
        lrows.append(["total", "", f"{sum(l.ann_split[0] for l in b.layers) / 1e3:.4g}",
                      f"{sum(l.ann_split[1] for l in b.layers) / 1e3:.4g}",
                      f"{sum(l.snn_split[0] for l in b.layers) / 1e3:.4g}",
                      f"{sum(l.snn_split[1] for l in b.layers) / 1e3:.4g}"])
        layer_sec.blocks.append(Table(["layer", "type", "ANN arithmetic nJ", "ANN memory nJ", "SNN arithmetic nJ",
                                       "SNN memory nJ"], lrows,
                                      f"{r['model']} ({r['simulator']}), per image at step {work.steps}: factor "
                                      f"{b.factor:.3g}. Arithmetic includes neuron activations/updates; the first "
                                      f"layer's input MACs and reads are split into arithmetic and memory."))
        shown += 1
    if not shown:
        layer_sec.blocks.append(Text("None of the report's eight models carries per-layer work in the input."))
    return Contribution([sec, layer_sec], ["Fair accounting: " + "; ".join(summary) + "."])
