"""Rows that would otherwise look identical, told apart (issue 23).

Within one output folder, two results of the same model, simulator and seed
are two variants: the simulator ran with other ``--option`` values, another
coding or readout or input encoding, another plugin version, or on other
data.  Every section groups and labels rows by simulator, so such variants
looked like one row repeated, were averaged as if they were seeds, and the
over-time figure showed only the first.

:func:`label_variants` gives each such row a ``variant`` text naming the
provenance fields (:data:`effmodel.provenance.PROVENANCE_COLUMNS`) whose
values differ within its group, with its own values (``flavour=spicy``,
``coding=ttfs``, ``effmodel-norse 0.2.0``), and makes its simulator
``"<simulator> [<variant>]"`` in the results, the per-step and the per-layer
tables alike, so every table, figure and verdict keeps the variants apart.
An empty value means "not recorded" (rows from older effmodel) and is
named as such beside a recorded one.  Rows alike in every recorded
provenance field keep their simulator (e.g. the same item run again with
more test images: the provenance table sums their phase times, the verdict
treats them as before).  Rows of different folders are never grouped: the
report tells folders apart by their protocol.  A row without a twin keeps
its simulator and an empty ``variant``.
"""

from __future__ import annotations

import json
from typing import Any

from ..provenance import PROVENANCE_COLUMNS

GROUP = ("source_folder", "model", "simulator", "seed")


def _known(value: Any) -> bool:
    return isinstance(value, str) and value not in ("", "nan")


def _mapping(value: Any) -> dict[str, Any]:
    try:
        out = json.loads(value) if _known(value) else {}
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _differences(rows: list[dict[str, Any]]) -> list[str]:
    """Per row, the text naming what differs from the other rows of its group."""
    parts: list[list[str]] = [[] for _ in rows]
    for field in PROVENANCE_COLUMNS:
        values = [r.get(field) for r in rows]
        if len({v for v in values if _known(v)}) < 2:
            continue
        if field in ("simulator_options", "plugin_versions"):
            maps = [_mapping(v) for v in values]
            keys = sorted({k for m in maps for k in m if len({json.dumps(n.get(k)) for n in maps}) > 1})
            for part, m, v in zip(parts, maps, values):
                if not _known(v):
                    part.append(f"{field} not recorded")
                elif field == "simulator_options":
                    part.append(", ".join(f"{k}={m[k]}" for k in keys if k in m) or "no options")
                else:
                    part.append(", ".join(f"{k} {m.get(k, '-')}" for k in keys))
        elif field == "dataset_fingerprint":
            for part, v in zip(parts, values):
                part.append(f"data {str(v)[:8]}" if _known(v) else "data not recorded")
        else:
            for part, v in zip(parts, values):
                part.append(f"{field}={v}" if _known(v) else f"{field} not recorded")
    return [", ".join(x for x in p if x) for p in parts]


def label_variants(results: Any, timesteps: Any, layers: Any) -> tuple[Any, Any, Any]:
    """``(results, timesteps, layers)`` with variants labelled (see the module
    docstring); the inputs are not modified."""
    results = results.copy()
    results["variant"] = ""
    if "simulator" in results:
        results["base_simulator"] = results["simulator"]  # the registered name, before any variant label
    if not all(c in results for c in GROUP[1:3]):
        return results, timesteps, layers
    keys = [c for c in GROUP if c in results]
    renamed: dict[tuple[str, str, str], str] = {}
    for _, group in results.groupby(keys, sort=False, dropna=False):
        if len(group) < 2:
            continue
        for index, label in zip(group.index, _differences(group.to_dict("records"))):
            if not label:  # alike in every recorded field
                continue
            row = results.loc[index]
            renamed[(str(row["run_id"]), str(row["model"]), str(row["simulator"]))] = f"{row['simulator']} [{label}]"
            results.at[index, "variant"] = label
    if not renamed:
        return results, timesteps, layers

    def relabel(table: Any) -> Any:
        if table is None or table.empty or not {"run_id", "model", "simulator"} <= set(table.columns):
            return table
        table = table.copy()
        table["simulator"] = [renamed.get((str(r), str(m), str(s)), s)
                              for r, m, s in zip(table["run_id"], table["model"], table["simulator"])]
        return table

    return relabel(results), relabel(timesteps), relabel(layers)
