"""Pricing stored results again under every registered cost model, by role.

The report never names a preset: it asks the plugin registry for every
cost model and groups them by the ``report_role`` each declares:

``headline``            the report's own rule (report-14x);
``fair``                the first fair preset (no-reuse ANN, step memory table);
``fair-zero-skipping``  the same with a zero-skipping ANN;
``dataflow``            one preset per ANN dataflow on one memory model: the
                        report shows each factor as the range across them;
``quantised``           int8 and low-bit baselines;
``sensitivity``, ``cross-node``, ``calibration``: listed, not tabulated.

A third party's preset with one of these roles reaches the report like a
built-in one.  :func:`reprice` gives one model's factor (with its interval
over the preset's ``ranges``) and both break-evens for one result's stored
per-layer work; :func:`dataflow_range` the range across the ``dataflow``
presets; :func:`modelling_range` the range over modelling choices
(dataflow, memory curve, access width) for one model; :func:`counted_rows`
the "counts / leaves out" table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from .ops import NetworkCount
from .pricing import CostModel
from .work import NetworkWork

ROLES = ("headline", "fair", "fair-zero-skipping", "dataflow", "quantised", "sensitivity", "cross-node",
         "calibration")


def registered_cost_models() -> dict[str, CostModel]:
    """Every cost model the installed plugins register (the only way the core sees them)."""
    from ..plugins import get_cost_models

    return dict(get_cost_models())


def presets_by_role(models: Mapping[str, CostModel] | None = None) -> dict[str, list[CostModel]]:
    """Registered cost models grouped by ``report_role``, in registration order
    (a model without a role is left out)."""
    models = registered_cost_models() if models is None else models
    out: dict[str, list[CostModel]] = {}
    for m in models.values():
        role = getattr(m, "report_role", "")
        if role:
            out.setdefault(role, []).append(m)
    return out


def preset_for(role: str, models: Mapping[str, CostModel] | None = None) -> CostModel | None:
    """The first registered model with ``role`` (``None`` if there is none)."""
    found = presets_by_role(models).get(role, [])
    return found[0] if found else None


@dataclass(frozen=True)
class Repriced:
    """One result priced under one model."""

    model: str
    factor: float
    low: float
    high: float
    break_even_ratio: float | None  # MAC:SynOp energy ratio at factor 1
    break_even_synops_per_synapse: float | None  # Dampfhoffer et al.'s unit
    ann_memory_share: float
    snn_memory_share: float


def reprice(model: CostModel, work: NetworkWork, counts: NetworkCount | None = None) -> Repriced:
    """``model``'s factor for ``work`` (``counts`` needed by ``ops`` models)."""
    b = model.breakdown(work, counts)
    lo, hi = model.factor_interval(work, counts)
    nan = float("nan")
    return Repriced(model=model.name, factor=b.factor, low=lo, high=hi,
                    break_even_ratio=model.break_even_ratio(work, counts),
                    break_even_synops_per_synapse=model.break_even_synops_per_synapse(work, counts),
                    ann_memory_share=b.ann.memory / b.ann.total if b.ann.total else nan,
                    snn_memory_share=b.snn.memory / b.snn.total if b.snn.total else nan)


def dataflow_range(work: NetworkWork, counts: NetworkCount | None = None,
                   models: Iterable[CostModel] | None = None) -> tuple[float, float, dict[str, Repriced]]:
    """The factor's range across the ``dataflow`` presets (each with its own
    interval): (lowest low, highest high, per model)."""
    chosen = list(models) if models is not None else presets_by_role().get("dataflow", [])
    per = {m.name: reprice(m, work, counts) for m in chosen}
    if not per:
        return math.nan, math.nan, per
    return min(r.low for r in per.values()), max(r.high for r in per.values()), per


MODELLING_CHOICES = {
    "dataflow": ("no-reuse", "row-stationary", "ideal-reuse"),
    "memory_curve": ("steps", "continuous"),
    "charge_width": (False, True),
}


def modelling_range(model: CostModel, work: NetworkWork, counts: NetworkCount | None = None,
                    choices: Mapping[str, tuple] | None = None) -> tuple[float, float, dict[tuple, Repriced]]:
    """The factor's range over the modelling choices, not only the energies:
    ``model`` priced under every combination of ``choices`` (by default the
    ANN's dataflow, the memory curve and whether accesses are charged by
    width), each with its own interval over ``ranges``.  Returns (lowest low,
    highest high, per combination)."""
    from dataclasses import replace
    from itertools import product

    choices = MODELLING_CHOICES if choices is None else choices
    keys = list(choices)
    per = {}
    for combo in product(*(choices[k] for k in keys)):
        per[combo] = reprice(replace(model, **dict(zip(keys, combo))), work, counts)
    return min(r.low for r in per.values()), max(r.high for r in per.values()), per


def counted_rows(models: Mapping[str, CostModel] | None = None) -> list[tuple[str, str, str, str]]:
    """(name, role, counts, leaves out) of every registered model that says what it counts."""
    models = registered_cost_models() if models is None else models
    return [(m.name, getattr(m, "report_role", ""), m.counts, m.leaves_out) for m in models.values()
            if getattr(m, "counts", "")]


def factor_table(results: Iterable[Mapping], layers: Iterable[Mapping],
                 models: Mapping[str, CostModel] | None = None,
                 roles: tuple[str, ...] = ("headline", "fair", "dataflow", "quantised")) -> list[dict]:
    """One row per stored result: its factor under every registered model
    with one of ``roles``, from its stored layer rows (results stored before
    fair accounting are left out).  ``results``/``layers``: rows as the store
    or its CSV exports give them."""
    by_role = presets_by_role(models)
    chosen = [m for role in roles for m in by_role.get(role, [])]
    groups: dict[tuple, list] = {}
    for r in layers:
        groups.setdefault((str(r["run_id"]), str(r["model"]), str(r["simulator"])), []).append(r)
    out = []
    for r in results:
        key = (str(r["run_id"]), str(r["model"]), str(r["simulator"]))
        work, counts = stored_work(r, groups.get(key, []))
        if work is None:
            continue
        row = {"model": key[1], "simulator": key[2], "step": work.steps}
        for m in chosen:
            if m.accounting == "ops" and counts is None:
                continue
            row[m.name] = reprice(m, work, counts)
        out.append(row)
    return out


def stored_work(result: Mapping, layer_rows: Iterable[Mapping]) -> tuple[NetworkWork | None, NetworkCount | None]:
    """A stored result's per-layer work (None when it was stored before fair
    accounting) and its network's exact counts (None when its ``spec_json``
    does not read back), from its results row and its layer rows."""
    import json

    from ..errors import UsageError
    from ..specs import spec_from_dict
    from .columns import work_from_layer_rows
    from .ops import count_network

    work = work_from_layer_rows(list(layer_rows), str(result["model"]))
    if work is None:
        return None, None
    try:
        counts = count_network(spec_from_dict(json.loads(result.get("spec_json") or "")))
    except (UsageError, ValueError, TypeError, KeyError):
        counts = None
    return work, counts


def markdown_table(rows: list[dict]) -> str:
    """``factor_table`` rows as a markdown table: factor [interval] per model,
    and the break-even in SynOps per synapse where there is one."""
    names = list(dict.fromkeys(k for r in rows for k in r if k not in ("model", "simulator", "step")))
    lines = ["| model | sim | step | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]

    def cell(r: Repriced | None) -> str:
        if r is None:
            return "-"
        same = abs(r.high - r.low) <= 1e-9 * max(abs(r.factor), 1)
        text = f"{r.factor:.3g}" if same else f"{r.factor:.3g} [{r.low:.3g}, {r.high:.3g}]"
        be = r.break_even_synops_per_synapse
        return text + (f"; b-e {be:.2g}/syn" if be is not None else "")

    for r in rows:
        lines.append(f"| {r['model']} | {r['simulator']} | {r['step']} | "
                     + " | ".join(cell(r.get(n)) for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m effmodel.accounting.reprice DIR...``: the factor table of the
    results in each output folder, read from its CSV exports only (safe on a
    folder a campaign is still writing)."""
    import csv
    import sys
    from pathlib import Path

    dirs = (sys.argv[1:] if argv is None else argv) or ["."]
    results, layers = [], []
    for d in map(Path, dirs):
        for name, into in (("results.csv", results), ("layers.csv", layers)):
            path = d / name
            if not path.is_file():
                print(f"error: {path} not found (export the store first)", file=sys.stderr)
                return 2
            with path.open(newline="") as f:
                into.extend(csv.DictReader(f))
    print(markdown_table(factor_table(results, layers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
