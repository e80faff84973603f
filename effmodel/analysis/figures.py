"""The report's figures: error and SynOps over time, activations vs spike
rates, factor vs depth and size, and the forest plot of the contrast under
every convention.  Matplotlib runs with the Agg backend and is imported
inside the functions."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .frame import Inputs, base_name
from .render import Contribution, Figure, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context

MAX_SERIES_MODELS = 12  # models drawn in the per-step figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def series_figures(inp: Inputs, paper_models: set[str]) -> tuple[list[Figure], str]:
    """Error and cumulative SynOps per step for each model, threshold marked
    (the report's figures 3 and 4)."""
    import numpy as np

    from ..threshold import threshold_step

    ts = inp.timesteps
    if ts is None or ts.empty:
        return [], "No per-step series in the input."
    res = inp.results
    order = sorted(res.itertuples(index=False), key=lambda r: (base_name(r.model) not in paper_models, r.model, r.simulator))
    picked, seen = [], set()
    for r in order:
        k = (r.model, r.simulator)
        if k in seen:
            continue
        seen.add(k)
        picked.append(r)
    note = ""
    if len(picked) > MAX_SERIES_MODELS:
        note = f"Showing {MAX_SERIES_MODELS} of {len(picked)} model/simulator pairs (reference models first)."
        picked = picked[:MAX_SERIES_MODELS]
    groups = {k: g.sort_values("t") for k, g in ts.groupby(["run_id", "model", "simulator"], sort=False)}
    plt = _plt()
    figs = []
    per = 4
    for start in range(0, len(picked), per):
        chunk = [r for r in picked[start:start + per] if (r.run_id, r.model, r.simulator) in groups]
        if not chunk:
            continue
        fig, axes = plt.subplots(len(chunk), 2, figsize=(9, 2.4 * len(chunk)), squeeze=False)
        for (ax_e, ax_s), r in zip(axes, chunk):
            g = groups[(r.run_id, r.model, r.simulator)]
            t = g["t"].to_numpy()
            err = g["error"].to_numpy(float)
            syn = g["synops_cumulative"].to_numpy(float) / 1e6
            tol = float(r.threshold_tolerance) if r.threshold_tolerance == r.threshold_tolerance else 0.01
            step = int(r.threshold_step) if r.threshold_step == r.threshold_step else threshold_step(err, tol)
            ax_e.plot(t, 100 * err, color="tab:red", lw=1.2)
            ax_e.axhline(100 * (err[-1] + tol), color="grey", ls=":", lw=0.8)
            ax_e.axvline(step, color="k", ls="--", lw=0.8)
            ax_e.set_ylabel("error [%]")
            ax_e.set_title(f"{r.model} ({r.simulator}): error, threshold step {step}", fontsize=9)
            ax_s.plot(t, syn, color="tab:blue", lw=1.2)
            ax_s.axvline(step, color="k", ls="--", lw=0.8)
            if 1 <= step <= len(syn):
                ax_s.plot([step], [syn[step - 1]], "ko", ms=4)
            ax_s.set_ylabel("SynOps per image [M]")
            ax_s.set_title(f"cumulative SynOps: {syn[step - 1] if 1 <= step <= len(syn) else np.nan:.3g} M at step {step}",
                           fontsize=9)
        for ax in axes[-1]:
            ax.set_xlabel("time step")
        fig.tight_layout()
        figs.append(Figure(f"series-{start // per + 1}", _png(fig),
                           "Error (left) and cumulative SynOps per image (right) against time steps. Dashed: the "
                           "threshold step (first step after which the error stays within the tolerance, dotted, "
                           "of its final value); the dot marks the SO-Costs."))
    return figs, note


def correlation_figure(inp: Inputs) -> tuple[Figure | None, Any]:
    """Correlation of ANN activations and SNN spike rates per layer."""
    ly = inp.layers
    if ly is None or ly.empty or ly["rate_act_corr"].isna().all():
        return None, None
    import pandas as pd

    ly = _in_network_order(ly, inp.results)
    ly["rate_act_corr"] = pd.to_numeric(ly["rate_act_corr"], errors="coerce")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.6))
    keys = list(dict.fromkeys(zip(ly["run_id"], ly["model"], ly["simulator"])))[:MAX_SERIES_MODELS]
    for run_id, model, sim in keys:
        g = ly[(ly["run_id"] == run_id) & (ly["model"] == model) & (ly["simulator"] == sim)]
        ax.plot(range(1, len(g) + 1), g["rate_act_corr"].to_numpy(float), "o-", ms=3, lw=1, label=f"{model} ({sim})")
    ax.set_xlabel("spiking layer (order in the network)")
    ax.set_ylabel("corr(activation, spike rate)")
    ax.set_ylim(min(0.0, float(ly["rate_act_corr"].min()) - 0.05), 1.02)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return Figure("rate-act-corr", _png(fig), "Pearson correlation between the normalised ANN activation and the SNN "
                  "spike rate of each neuron, per spiking layer (first simulated batch), as in the report's figure 4."), ly


def _in_network_order(layers: Any, results: Any) -> Any:
    """Layer rows sorted as the layers sit in the network (the store keeps no
    layer index, so the order is taken from each result's ``spec_json``)."""
    order: dict[tuple[str, str, str], dict[str, int]] = {}
    for r in results.to_dict("records"):
        try:
            names = [l.get("name", "") for l in json.loads(r.get("spec_json") or "{}").get("layers", [])]
        except (TypeError, json.JSONDecodeError):
            names = []
        order[(str(r["run_id"]), str(r["model"]), str(r["simulator"]))] = {n: i for i, n in enumerate(names)}
    ly = layers.reset_index(drop=True).copy()
    ly["_pos"] = [order.get((str(a), str(b), str(c)), {}).get(str(n), 10_000 + i)
                  for i, (a, b, c, n) in enumerate(zip(ly["run_id"], ly["model"], ly["simulator"], ly["layer"]))]
    return ly.sort_values(["run_id", "model", "simulator", "_pos"], kind="stable").drop(columns="_pos")


def efficiency_figure(df: Any, simulator: str, paper: Any) -> Figure | None:
    """Factor against depth and against parameters, with marginal fits and
    95% confidence bands; the report's eight points for comparison."""
    import numpy as np

    from .regressions import band

    if len(df) < 3:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colours = {"mnist": "tab:blue", "cifar10": "tab:orange"}
    for ax, x, label in ((axes[0], "depth", "depth (hidden conv + dense layers)"),
                         (axes[1], "log_params", "trainable parameters")):
        xs = df[x].to_numpy(float)
        xplot = (lambda v: np.exp(v)) if x == "log_params" else (lambda v: v)
        for ds, g in df.groupby("dataset"):
            ax.scatter(xplot(g[x].to_numpy(float)), np.exp(g["log_factor"].to_numpy(float)), s=22,
                       color=colours.get(ds, None), label=f"ours: {ds}", zorder=3)
        if paper is not None and len(paper):
            ax.scatter(xplot(paper[x].to_numpy(float)), np.exp(paper["log_factor"].to_numpy(float)), marker="x",
                       color="grey", label="report (Table 2)", zorder=2)
        if np.unique(xs).size >= 2 and len(df) >= 3:
            b = band(df, x)
            ax.plot(xplot(b["x"]), np.exp(b["fit"]), color="k", lw=1.2,
                    label=f"fit: slope {b['slope']:.2f} [{b['slope_ci'][0]:.2f}, {b['slope_ci'][1]:.2f}]")
            ax.fill_between(xplot(b["x"]), np.exp(b["lo"]), np.exp(b["hi"]), color="k", alpha=0.12, lw=0,
                            label=f"95% band ({b['cov_type']})")
        ax.axhline(1.0, color="tab:red", ls=":", lw=1)
        ax.set_yscale("log")
        if x == "log_params":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("factor = ANN cost / SNN cost")
    fig.suptitle(f"Efficiency factor vs depth and size ({simulator}); red: break-even", fontsize=10)
    fig.tight_layout()
    return Figure(f"factor-{_slug(simulator)}", _png(fig),
                  f"Factor against depth (left) and parameters (right) for {simulator}, one point per architecture "
                  "(seeds averaged on the log scale). Lines: marginal OLS fits of log(factor) pooled over datasets, "
                  "with 95% confidence bands of the mean; the adjusted effects are in the regression tables.")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", s) or "x"


def forest_figure(rows: list[Any], title: str, key: str = "") -> Figure | None:
    """The contrast's 95 % CI per convention, the primary row first: at a
    glance, which conclusions survive every convention.  ``rows``:
    :class:`effmodel.analysis.robustness.ConventionRow`."""
    import math

    shown = [r for r in rows if math.isfinite(r.contrast.low) and math.isfinite(r.contrast.high)]
    if not shown:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(shown) + 1.2))
    colours = {"depth dominates": "tab:blue", "size dominates": "tab:orange", "undetermined": "grey"}
    for i, r in enumerate(shown):
        y = len(shown) - 1 - i
        c = colours.get(r.verdict, "grey")
        ax.plot([r.contrast.low, r.contrast.high], [y, y], color=c, lw=2)
        ax.plot([r.contrast.estimate], [y], "o", color=c, ms=4)
    ax.axvline(0, color="k", lw=0.8, ls=":")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([r.label for r in reversed(shown)], fontsize=7)
    ax.set_xlabel("|depth effect| - |size effect| (log factor per within-dataset SD), 95% cluster-bootstrap CI")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return Figure("forest-" + _slug(key or title.split(":")[0]), _png(fig),
                  "The verdict's contrast under every convention (blue: depth dominates, orange: size dominates, "
                  "grey: undetermined; right of the dotted line depth has the larger standardised effect).")


def series_contribution(ctx: "Context") -> Contribution:
    """Error and cumulative SynOps per step (the report's figures 3 and 4)."""
    series, note = series_figures(ctx.inputs, ctx.paper_models)
    sec = Section("Error and SynOps over time (report figures 3 and 4)")
    if note:
        sec.blocks.append(Text(note))
    sec.blocks += series or [Text("No per-step series in the input.")]
    return Contribution([sec])


def correlation_contribution(ctx: "Context") -> Contribution:
    """Per-layer correlation of ANN activations and SNN spike rates."""
    from .regressions import fmt

    sec = Section("Activations vs spike rates per layer")
    fig, ly = correlation_figure(ctx.inputs)
    if fig is None:
        sec.blocks.append(Text("No per-layer correlations in the input."))
        return Contribution([sec])
    sec.blocks.append(fig)
    agg = ly.groupby(["model", "simulator"])["rate_act_corr"].agg(["min", "mean", "count"]).reset_index()
    sec.blocks.append(Table(["model", "simulator", "layers", "min corr", "mean corr"],
                            [[str(r["model"]), str(r["simulator"]), str(int(r["count"])), fmt(float(r["min"])),
                              fmt(float(r["mean"]))] for r in agg.to_dict("records")]))
    return Contribution([sec])


ENERGY_PRESETS = (("headline", "once"), ("fair", None))  # report roles: report-14x with the analog first layer
# priced once per image (the primary specification), and the fair preset with its own policies
MAX_ACCURACY_COST_MODELS = 8  # networks drawn in the accuracy-against-cost figure


@dataclass(frozen=True)
class AccuracyCost:
    """One stored result's accuracy after each step against its cumulative
    SynOps per image and its cost under each energy preset (``curves``: one
    :class:`effmodel.analysis.curves.CostCurve` per preset that could price
    it), with the ANN's accuracy and MACs."""

    run_id: str
    model: str
    simulator: str
    accuracy: Any  # (T,)
    synops: Any  # (T,)
    ann_accuracy: float
    ann_macs: float
    curves: tuple[Any, ...]


def accuracy_cost_data(inp: Inputs, paper_models: set[str], cost_models: Any = None,
                       limit: int = MAX_ACCURACY_COST_MODELS) -> list[AccuracyCost]:
    """What the accuracy-against-cost figure draws, for up to ``limit``
    results (reference models first): per step, the SNN's accuracy, its
    cumulative SynOps and its cumulative cost under each of
    :data:`ENERGY_PRESETS` (registered by role), from the stored series."""
    import math

    from ..accounting.reprice import preset_for
    from .curves import cost_curve, counts_of
    from .robustness import _layer_rows, _num, _series

    series = _series(inp.timesteps)
    if not series:
        return []
    layers = _layer_rows(inp.layers)
    presets = [(preset_for(role, cost_models), first) for role, first in ENERGY_PRESETS]
    rows = sorted(inp.results.to_dict("records"), key=lambda r: (base_name(r["model"]) not in paper_models, str(r["model"])))
    rows = [r for r in rows if (str(r["run_id"]), str(r["model"]), str(r["simulator"])) in series][:limit]
    out, cache = [], {}
    for r in rows:
        key = (str(r["run_id"]), str(r["model"]), str(r["simulator"]))
        err, syn = series[key]
        counts = counts_of(r.get("spec_json"), cache)
        curves = tuple(c for c in (cost_curve(r, err, syn, layers.get(key, []), m, first, counts=counts)
                                   for m, first in presets if m is not None and counts is not None) if c is not None)
        macs = _num(r.get("ann_macs"))
        out.append(AccuracyCost(*key, accuracy=1.0 - err, synops=syn, ann_accuracy=_num(r.get("ann_accuracy")),
                                ann_macs=macs if math.isfinite(macs) else float("nan"), curves=curves))
    return out


def accuracy_cost_figures(inp: Inputs, paper_models: set[str], cost_models: Any = None) -> list[Figure]:
    """One panel per x axis: SNN accuracy against its cumulative SynOps per
    image, and against its cumulative energy under the headline and the fair
    preset; one colour per network, its ANN (accuracy, MACs or cost under the
    same preset) marked as a star of that colour.  Three axes, whatever the
    number of networks, so the figure stays cheap."""
    import math

    from matplotlib.ticker import NullFormatter

    data = accuracy_cost_data(inp, paper_models, cost_models)
    if not data:
        return []
    presets = list(dict.fromkeys(c.cost_model for d in data for c in d.curves))
    units = {c.cost_model: c.unit for d in data for c in d.curves}
    plt = _plt()
    fig, axes = plt.subplots(1, 1 + len(presets), figsize=(4.2 * (1 + len(presets)), 3.6), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10")
    for i, d in enumerate(data):
        colour, label = colours(i % 10), f"{d.model} ({d.simulator})"
        curves = {c.cost_model: c for c in d.curves}
        for ax, key in zip(axes[0], [None, *presets]):
            c = curves.get(key)
            if key is not None and c is None:
                continue
            x, ann = (d.synops, d.ann_macs) if c is None else (c.snn_cost, c.ann_cost)
            ax.plot(x, 100 * d.accuracy, color=colour, lw=1.1, label=label if key is None else None)
            if math.isfinite(ann) and ann > 0 and math.isfinite(d.ann_accuracy):
                ax.plot([ann], [100 * d.ann_accuracy], "*", color=colour, ms=9, mec="k", mew=0.4)
    for ax, key in zip(axes[0], [None, *presets]):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("cumulative SynOps per image (ANN: MACs)" if key is None
                      else f"cumulative {key} cost per image [{units.get(key) or 'units'}]", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("accuracy [%]", fontsize=8)
    axes[0][0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return [Figure("accuracy-cost", _png(fig),
                   "SNN accuracy after each step against its cumulative SynOps per image (left) and its cumulative "
                   "cost per image under the headline preset (report-14x, the analog first layer priced once per "
                   "image, as in the primary specification) and the fair preset. Stars: the ANN of the same colour "
                   "(its accuracy, and its MACs or its cost under the same preset): where a curve passes left of its "
                   "star's cost at that accuracy, the SNN is cheaper there. The fair preset's per-layer work is stored "
                   "at the cost point only: other steps scale each layer's SynOps and spikes by the network's "
                   "cumulative SynOps (exact at the cost point).")]


def accuracy_cost_contribution(ctx: "Context") -> Contribution:
    sec = Section("Accuracy against cost")
    figs = accuracy_cost_figures(ctx.inputs, ctx.paper_models, ctx.cost_models)
    sec.blocks += figs or [Text("No per-step series in the input.")]
    return Contribution([sec])


def layer_shares(inp: Inputs, paper_models: set[str]) -> Any:
    """Each spiking layer's share (%) of its network's spikes and SynOps
    (reference models, or every model when none is a reference model)."""
    import pandas as pd

    ly = inp.layers
    if ly is None or ly.empty or "synops" not in ly:
        return pd.DataFrame()
    ly = _in_network_order(ly, inp.results)
    keep = ly["model"].map(base_name).isin(paper_models)
    ly = ly[keep] if keep.any() else ly
    ly = ly.assign(spikes=pd.to_numeric(ly["spikes"], errors="coerce"), synops=pd.to_numeric(ly["synops"], errors="coerce"))
    key = ["run_id", "model", "simulator"]
    tot = ly.groupby(key)[["spikes", "synops"]].transform("sum")
    return ly.assign(spike_share=100 * ly["spikes"] / tot["spikes"], synop_share=100 * ly["synops"] / tot["synops"])


def layer_share_contribution(ctx: "Context") -> Contribution:
    """Where the spikes and SynOps are: each layer's share per network."""
    sec = Section("Each layer's share of spikes and SynOps")
    sh = layer_shares(ctx.inputs, ctx.paper_models)
    if sh.empty:
        sec.blocks.append(Text("No per-layer counts in the input."))
        return Contribution([sec])
    rows = [[str(r["model"]), str(r["simulator"]), str(r["layer"]), f"{r['spike_share']:.1f}", f"{r['synop_share']:.1f}"]
            for r in sh.to_dict("records")]
    sec.blocks.append(Table(["model", "simulator", "layer", "spikes %", "SynOps %"], rows,
                            "Share of each spiking layer in its network's spikes and in the SynOps its spikes cause."))
    return Contribution([sec])


def seed_spread(prep: Any) -> Any:
    """Per architecture with two or more seeds: the range (max - min) of its
    seeds' log factors."""
    rows = prep.rows[prep.rows["arch"].isin(set(prep.arches["arch"]))]
    g = rows.groupby("arch")["log_factor"]
    out = g.agg(["count", "min", "max"]).reset_index()
    out = out[out["count"] >= 2]
    return out.assign(spread=out["max"] - out["min"])


def seed_spread_contribution(ctx: "Context") -> Contribution:
    """How far seeds of one architecture lie apart, against how far
    architectures do (primary pricing)."""
    import numpy as np

    sec = Section("Spread between seeds")
    lines = []
    for sim, prep in ctx.preps.items():
        sp = seed_spread(prep)
        if sp.empty:
            sec.blocks.append(Text(f"{sim}: no architecture has two seeds."))
            continue
        between = float(np.std(prep.arches["log_factor"].to_numpy(float), ddof=1))
        text = (f"{sim}: {len(sp)} architectures with two or more seeds; the median range of their seeds' log factor "
                f"is {float(np.median(sp['spread'])):.3f} (largest {float(sp['spread'].max()):.3f}), against an SD of "
                f"{between:.3f} between architectures.")
        sec.blocks.append(Text(text))
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 2.8))
        ax.hist(np.exp(sp["spread"].to_numpy(float)), bins=20, color="tab:grey")
        ax.set_xlabel("ratio of the highest to the lowest seed's factor")
        ax.set_ylabel("architectures")
        fig.tight_layout()
        sec.blocks.append(Figure(f"seed-spread-{_slug(sim)}", _png(fig),
                                 f"{sim}: how much a network's factor moves between seeds (primary pricing)."))
        if sim == ctx.headline:
            lines.append("Seeds: " + text)
    return Contribution([sec], lines)
