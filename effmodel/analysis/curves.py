"""A stored result's cost per image up to every step, under one pricing.

The per-step series (``timesteps``: error and cumulative SynOps per image)
and, for ``access`` presets, the per-layer work stored at the cost point
are enough to price the SNN at every step without simulating again:

* ``ops`` presets (``report-14x``, ...) price totals: SynOps up to step
  ``t`` at ``synop``, every spiking neuron at every step up to ``t`` at
  ``neuron_update``, and the analog first layer by the ``first_layer``
  convention of :func:`effmodel.analysis.robustness.reprice` (the same
  function prices both, :func:`ops_snn_cost`).  Exact at every step.
* ``access`` presets (``fair-45nm-fp32``, ...) price per layer.  The store
  keeps each layer's SynOps and spikes at the cost point ``T*`` only, so the
  work at step ``t`` is that work with ``t`` steps (neuron updates, the
  first layer's evaluations) and every layer's SynOps and spikes scaled by
  the network's cumulative SynOps at ``t`` over those at ``T*``
  (:meth:`effmodel.accounting.NetworkWork.scaled_activity`): exact at
  ``T*``, and elsewhere as long as the layers' shares of the SynOps do not
  drift over time.

Used by the accuracy-against-energy figure and by the cost step's bootstrap
(the factor at a resampled step).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

FIRST_LAYER_CONVENTIONS = ("excluded", "once", "every-step")


@dataclass(frozen=True)
class CostCurve:
    """Cost per image up to each step ``1..T`` (``snn_cost[t - 1]``), the
    SNN's accuracy after each step, and the ANN's accuracy and cost, under
    ``cost_model``.  ``exact_at``: ``None`` when every step is exact, else
    the one step that is (the stored cost point of an ``access`` preset)."""

    run_id: str
    model: str
    simulator: str
    cost_model: str
    unit: str
    accuracy: Any  # (T,)
    synops: Any  # (T,) cumulative SynOps per image
    snn_cost: Any  # (T,) cumulative SNN cost per image
    ann_cost: float
    ann_accuracy: float
    exact_at: int | None = None

    @property
    def steps(self) -> Any:
        import numpy as np

        return np.arange(1, len(self.snn_cost) + 1)


def ops_snn_cost(model: Any, counts: Any, step: Any, synops: Any, first_layer: str = "excluded",
                 neuron_updates: str = "model") -> Any:
    """The SNN's cost of an ``ops`` preset after ``step`` steps with ``synops``
    SynOps per image (scalars or arrays of the same shape).

    ``neuron_updates``: ``model`` (every spiking neuron at every step at the
    preset's ``neuron_update``), ``free`` or ``synop`` (one SynOp each);
    ``first_layer``: ``excluded`` (the 2019 rule), ``once`` (the ANN's cost of
    the first conv/dense layer, once per image) or ``every-step``."""
    from .robustness import first_weighted

    priced = {"model": model, "free": replace(model, neuron_update=0.0),
              "synop": replace(model, neuron_update=model.synop)}[neuron_updates]
    snn = priced.snn_cost(synops, counts.membrane_neurons * step)  # every unit with a membrane (not max pools)
    if first_layer != "excluded":
        first_cost = model.ann_cost(replace(counts, layers=first_weighted(counts)))
        snn = snn + first_cost * (step if first_layer == "every-step" else 1.0)
    return snn


def counts_of(spec_json: Any, cache: dict[str, Any] | None = None) -> Any:
    """The exact counts of a stored result's ``spec_json`` (None if unreadable)."""
    import effmodel

    from ..errors import UsageError
    from ..specs import spec_from_dict

    if cache is not None and spec_json in cache:
        return cache[spec_json]
    try:
        counts = effmodel.count_network(spec_from_dict(json.loads(spec_json)))
    except (TypeError, ValueError, KeyError, UsageError):
        counts = None
    if cache is not None:
        cache[spec_json] = counts
    return counts


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def cost_curve(row: Mapping[str, Any], error: Sequence[float], synops_cumulative: Sequence[float],
               layer_rows: Sequence[Mapping[str, Any]], model: Any, first_layer: str | None = None,
               neuron_updates: str = "model", counts: Any = None) -> CostCurve | None:
    """The cost curve of one stored result (``row``: its results row;
    ``error`` / ``synops_cumulative``: its per-step series; ``layer_rows``:
    its stored per-layer rows, needed by ``access`` presets) under ``model``
    (a ``CostModel``).  ``first_layer`` (``ops`` presets): default
    ``excluded``; an ``access`` preset uses its own policy unless given.
    ``None`` when the series, the spec or (``access``) the per-layer work is
    missing."""
    import numpy as np

    from ..accounting import work_from_layer_rows

    err = np.asarray(error, dtype=float)
    syn = np.asarray(synops_cumulative, dtype=float)
    if err.size == 0 or err.size != syn.size:
        return None
    counts = counts if counts is not None else counts_of(row.get("spec_json"))
    if counts is None:
        return None
    steps = np.arange(1, err.size + 1)
    common = dict(run_id=str(row.get("run_id")), model=str(row.get("model")), simulator=str(row.get("simulator")),
                  cost_model=model.name, unit=str(getattr(model, "unit", "") or ""), accuracy=1.0 - err, synops=syn,
                  ann_accuracy=_num(row.get("ann_accuracy")))
    if model.accounting != "access":
        snn = ops_snn_cost(model, counts, steps, syn, first_layer or "excluded", neuron_updates)
        return CostCurve(**common, snn_cost=np.asarray(snn, dtype=float), ann_cost=float(model.ann_cost(counts)))
    if first_layer is not None:
        model = replace(model, first_layer=first_layer)
    work = work_from_layer_rows(layer_rows, str(row.get("model")))
    if work is None or not 1 <= work.steps <= err.size:
        return None
    at = syn[work.steps - 1]
    snn = np.empty(err.size)
    ann = float("nan")
    for t in steps:
        scale = syn[t - 1] / at if at > 0 else 0.0
        w = work.scaled_activity(scale)
        w = replace(w, steps=int(t), layers=tuple(replace(l, steps=int(t)) for l in w.layers))
        b = model.breakdown(w, counts)
        snn[t - 1] = b.snn.total
        if t == work.steps:
            ann = b.ann.total
    if not math.isfinite(ann):
        return None
    return CostCurve(**common, snn_cost=snn, ann_cost=ann, exact_at=int(work.steps))
