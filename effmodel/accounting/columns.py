"""The columns fair accounting adds to a stored result and its layers.

:func:`result_columns` turns a simulation's per-layer series into the work
of both networks at the cost point (:func:`effmodel.accounting.work.network_work`),
their memory accesses by kind and the cost model's split of each side into
arithmetic, memory, neuron updates and the input layer, with the factor's
exact interval and the break-evens (MAC:SynOp ratio; SynOps per synapse).  :func:`layer_columns`
stores the per-layer work, so a report can price any stored result under
any preset afterwards (:func:`work_from_layer_rows`).

Column names are stable (a results.csv of an earlier version keeps its
meaning): new columns are appended, never renamed.  Since issue 22 the SNN's
``snn_neuron_updates`` and membrane accesses leave out max-pooling units
(they have no membrane).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from ..specs import ArchitectureSpec
from .ops import NetworkCount
from .pricing import CostModel
from .work import LayerWork, NetworkWork, network_work

FAIR_PRESET = "fair-45nm-fp32"
FAIR_ZS_PRESET = "fair-45nm-fp32-zs"

ANN_ACCESS_COLUMNS = ("weight_reads", "act_reads", "act_writes")
SNN_ACCESS_COLUMNS = ("weight_reads", "act_reads", "membrane_reads", "membrane_writes", "spike_reads", "spike_writes")
# Per result row (per image, at the cost point).
RESULT_COLUMNS = (
    "cost_point", "cost_point_delta", "cost_point_reached", "snn_accuracy_at_cost_point",
    "ann_effective_macs", "ann_neuron_activations", "snn_neuron_updates", "snn_input_macs",
    *(f"ann_{k}" for k in ANN_ACCESS_COLUMNS),
    *(f"snn_{k}" for k in SNN_ACCESS_COLUMNS),
    *(f"{side}_cost_{part}" for side in ("ann", "snn") for part in ("arithmetic", "memory", "neuron", "input")),
    "factor_low", "factor_high", "break_even_ratio",
    # issue 22 (appended)
    "ann_psum_reads", "ann_psum_writes", "snn_route_reads", "break_even_synops_per_synapse",
)
RESULT_INT = {"cost_point_reached"}
RESULT_TEXT = {"cost_point"}
# Per layer row (per image, at the cost point).
LAYER_COLUMNS = ("layer_index", "layer_inputs", "layer_params", "ann_dense_ops", "ann_effective_ops",
                 "snn_synops_in", "snn_spikes_in", "snn_spikes_out", "cost_step", "first_layer")
LAYER_INT = {"layer_index", "layer_inputs", "layer_params", "cost_step", "first_layer"}


def work_at(spec: ArchitectureSpec, result: Any, step: int, effective_ops: Mapping[str, float] | None) -> NetworkWork:
    """Per-layer work of ``result`` (a :class:`SimulationResult`) at ``step``."""
    return network_work(spec, step, result.num_images, dict(result.synops_t), dict(result.spikes_t),
                        dict(effective_ops or {}))


def result_columns(work: NetworkWork, model: CostModel, counts: NetworkCount, *, cost_point: str, delta: float,
                   reached: bool, accuracy_at_step: float) -> dict[str, Any]:
    """The fair-accounting columns of a results row under ``model``."""
    from .access import AccessCounts

    ann_acc = AccessCounts.of([a for l in work.layers for a in model.ann_layer_accesses(l)])
    snn_acc = AccessCounts.of([a for l in work.layers for a in model.snn_layer_accesses(l, work)])
    b = model.breakdown(work, counts)
    lo, hi = model.factor_interval(work, counts)
    row: dict[str, Any] = {
        "cost_point": cost_point, "cost_point_delta": delta, "cost_point_reached": int(reached),
        "snn_accuracy_at_cost_point": accuracy_at_step,
        "ann_effective_macs": work.ann_effective_macs,
        "ann_neuron_activations": float(work.ann_neuron_activations),
        "snn_neuron_updates": float(work.snn_neuron_updates),
        "snn_input_macs": work.input_macs_per_step,
        "factor_low": lo, "factor_high": hi, "break_even_ratio": model.break_even_ratio(work, counts),
        "ann_psum_reads": ann_acc.psum_reads, "ann_psum_writes": ann_acc.psum_writes,
        "snn_route_reads": snn_acc.route_reads,
        "break_even_synops_per_synapse": model.break_even_synops_per_synapse(work, counts),
    }
    row |= {f"ann_{k}": getattr(ann_acc, k) for k in ANN_ACCESS_COLUMNS}
    row |= {f"snn_{k}": getattr(snn_acc, k) for k in SNN_ACCESS_COLUMNS}
    for side, cost in (("ann", b.ann), ("snn", b.snn)):
        row |= {f"{side}_cost_arithmetic": cost.arithmetic, f"{side}_cost_memory": cost.memory,
                f"{side}_cost_neuron": cost.neuron, f"{side}_cost_input": cost.input_layer}
    if model.accounting == "access":  # the headline columns follow the model's own total
        row |= {"total_costs": b.ann.total, "snn_costs": b.snn.total, "factor": b.factor}
    return row


def layer_columns(work: NetworkWork) -> dict[str, dict[str, Any]]:
    """Per layer name, the stored per-layer work."""
    return {l.name: {"layer_index": l.index, "layer_inputs": l.inputs, "layer_params": l.params,
                     "ann_dense_ops": l.dense_ops, "ann_effective_ops": l.effective_ops, "snn_synops_in": l.synops,
                     "snn_spikes_in": l.spikes_in, "snn_spikes_out": l.spikes_out, "cost_step": l.steps,
                     "first_layer": int(l.first)} for l in work.layers}


def work_from_layer_rows(rows: Iterable[Mapping[str, Any]], name: str = "") -> NetworkWork | None:
    """Rebuild a result's :class:`NetworkWork` from its stored layer rows
    (``None`` for results stored before fair accounting existed).  Values may
    be typed (the store, pandas) or text (the ``csv`` module): ``"0"`` is not
    a first layer."""
    layers = []
    rows = list(rows)
    if not rows or any(_missing(r.get(c)) for r in rows for c in LAYER_COLUMNS + ("neurons",)):
        return None  # stored before fair accounting (None in SQLite, NaN from a CSV)
    for r in sorted(rows, key=lambda r: int(r["layer_index"])):
        layers.append(LayerWork(
            name=str(r["layer"]), type=str(r["type"]), index=int(r["layer_index"]), inputs=int(r["layer_inputs"]),
            params=int(r["layer_params"]), neurons=int(r["neurons"]), dense_ops=float(r["ann_dense_ops"]),
            effective_ops=float(r["ann_effective_ops"]), synops=float(r["snn_synops_in"]),
            spikes_in=float(r["snn_spikes_in"]), spikes_out=float(r["snn_spikes_out"]), steps=int(r["cost_step"]),
            first=bool(int(float(r["first_layer"])))))
    if not layers:
        return None
    return NetworkWork(spec_name=name, steps=layers[0].steps, layers=tuple(layers))


def _missing(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and v != v)  # SQLite NULL, csv module, pandas NaN


def accuracy_at(result: Any, step: int) -> float:
    """The SNN's accuracy after 1-based ``step``."""
    return float(1.0 - np.asarray(result.error_t)[step - 1])


def measured_effective_ops(spec: ArchitectureSpec, weights: Any, x: Any, n: int, chunk: int = 1000) -> dict[str, float]:
    """:func:`effmodel.counting.ann_effective_ops` over the first ``n`` images
    of ``x`` (raw dataset arrays), converted to float a chunk at a time so
    that 10,000 CIFAR-10 images never sit in memory as floats at once."""
    from ..datasets import to_float
    from .work import ann_effective_ops

    totals: dict[str, float] = {}
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        for name, per_image in ann_effective_ops(spec, weights, to_float(x[start:stop])).items():
            totals[name] = totals.get(name, 0.0) + per_image * (stop - start)
    return {k: v / max(n, 1) for k, v in totals.items()}
