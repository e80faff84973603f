"""Fair accounting across ANN dataflows (issue 22): every stored result priced
by each registered preset whose report role is ``dataflow`` (the ANN without
reuse, with ideal reuse, row-stationary) and ``quantised`` (int8, low-bit),
from its stored per-layer work; the factor's range across the dataflows and
the break-even in both units (the MAC:SynOp energy ratio, and Dampfhoffer et
al.'s SynOps per synapse per inference).  Presets come from the plugin
registry by their declared role, so a third party's dataflow appears here too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .render import Contribution, Section, Table, Text

if TYPE_CHECKING:
    from .report import Context

ROLES = ("dataflow", "quantised")


def _factor(r) -> str:
    if r is None or not math.isfinite(r.factor):
        return "-"
    if abs(r.high - r.low) <= 1e-9 * max(abs(r.factor), 1):
        return f"{r.factor:.3g}"
    return f"{r.factor:.3g} [{r.low:.3g}, {r.high:.3g}]"


def _number(v: float | None, spec: str = ".3g") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def dataflow_contribution(ctx: "Context") -> Contribution:
    """One row per result: factor per dataflow and quantised preset, the
    range across dataflows, and the row-stationary preset's break-even in
    both units; a table of what each preset counts and leaves out."""
    from ..accounting.reprice import counted_rows, dataflow_range, presets_by_role, reprice, stored_work

    by_role = presets_by_role()
    dataflows, quantised = by_role.get("dataflow", []), by_role.get("quantised", [])
    sec = Section("Fair accounting across ANN dataflows")
    if not dataflows:
        sec.blocks.append(Text("No cost model with the report role 'dataflow' is installed."))
        return Contribution([sec])
    inp = ctx.inputs
    layers = inp.layers
    groups = {k: g.to_dict("records") for k, g in layers.groupby(["run_id", "model", "simulator"])} \
        if layers is not None and not layers.empty and "ann_dense_ops" in layers else {}
    reference = next((m for m in dataflows if "row-stationary" in m.name), dataflows[-1])
    rows, inside = [], 0
    for r in inp.results.to_dict("records"):
        work, counts = stored_work(r, groups.get((str(r["run_id"]), str(r["model"]), str(r["simulator"])), []))
        if work is None:
            continue
        low, high, per = dataflow_range(work, counts, dataflows)
        quant = {m.name: reprice(m, work, counts) for m in quantised}
        ref = per.get(reference.name)
        inside += int(math.isfinite(low) and low > 1)
        rows.append([str(r["model"]), str(r["simulator"])]
                    + [_factor(per.get(m.name)) for m in dataflows]
                    + [f"{_number(low)} - {_number(high)}"]
                    + [_factor(quant.get(m.name)) for m in quantised]
                    + [_number(ref.break_even_ratio if ref else None),
                       _number(ref.break_even_synops_per_synapse if ref else None, ".2g")])
    if not rows:
        sec.blocks.append(Text("No result in the input carries per-layer work (stored before fair accounting)."))
        return Contribution([sec])
    sec.blocks.append(Text(
        "Each result priced by every installed preset whose role is 'dataflow' or 'quantised' "
        "(docs/accounting.md), from its stored per-layer work at its cost point. The range spans the dataflows' "
        "factors with their energy intervals. Break-even under "
        f"{reference.name}: the MAC:SynOp energy ratio at which the factor is 1, and the SynOps per synapse per "
        "inference at which the SNN costs what the ANN does (Dampfhoffer et al. 2023's unit)."))
    header = (["model", "sim"] + [m.name for m in dataflows] + ["range across dataflows"]
              + [m.name for m in quantised] + ["break-even MAC:SynOp", "break-even SynOps/synapse"])
    sec.blocks.append(Table(header, rows, "Factor = ANN cost / SNN cost; above 1 the SNN is cheaper."))
    line = (f"Across ANN dataflows the SNN is cheaper under every dataflow in {inside} of {len(rows)} results "
            f"(docs/accounting.md)")
    sec.blocks.append(Text(line + "."))
    chosen = {m.name for m in dataflows + quantised}
    sec.blocks.append(Table(["cost model", "role", "counts", "leaves out"],
                            [list(c) for c in counted_rows() if c[0] in chosen],
                            "What each of these presets counts, as the preset declares it."))
    return Contribution([sec], [line])
