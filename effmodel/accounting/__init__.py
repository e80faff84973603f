"""Fair accounting: what each network does, what it touches, what that costs.

One concept per module:

:mod:`.ops`
    exact operation counts of an architecture (MACs, synapses, FLOPs, fan-out);
:mod:`.work`
    the per-image work of a simulated result, layer by layer (taps, SynOps,
    spikes, neuron updates at the cost point);
:mod:`.access`
    the access policies: ANN dataflows, zero skipping, the SNN's first layer,
    spike events and storage (which memory serves every access);
:mod:`.memory`
    the energy of one access as a function of memory size and access width;
:mod:`.pricing`
    cost models (:class:`CostModel`) that price work and accesses;
:mod:`.columns`
    the columns a stored result and its layers carry;
:mod:`.reprice`
    pricing stored results again under every registered cost model, by the
    role each preset declares (what the report calls).

``effmodel.counting`` and ``effmodel.costs`` re-export the names they always
had, so code written against them keeps working.
"""

from __future__ import annotations

from .access import (ACCESS_KINDS, DATAFLOWS, FIRST_LAYER_POLICIES, Access, AccessCounts, Storage, ann_accesses,
                     snn_accesses)
from .columns import (FAIR_PRESET, FAIR_ZS_PRESET, LAYER_COLUMNS, LAYER_INT, RESULT_COLUMNS, RESULT_INT, RESULT_TEXT,
                      accuracy_at, layer_columns, measured_effective_ops, result_columns, work_at,
                      work_from_layer_rows)
from .memory import MemoryModel
from .pricing import CostBreakdown, CostModel, LayerCost, SideCost, load_cost_models, validate_cost_model
from .work import LayerWork, NetworkWork, network_work, work_from_counts

__all__ = [
    "ACCESS_KINDS", "DATAFLOWS", "FIRST_LAYER_POLICIES", "Access", "AccessCounts", "Storage", "ann_accesses",
    "snn_accesses", "FAIR_PRESET", "FAIR_ZS_PRESET", "LAYER_COLUMNS", "LAYER_INT", "RESULT_COLUMNS", "RESULT_INT",
    "RESULT_TEXT", "accuracy_at", "layer_columns", "measured_effective_ops", "result_columns", "work_at",
    "work_from_layer_rows", "MemoryModel", "CostBreakdown", "CostModel", "LayerCost", "SideCost", "load_cost_models",
    "validate_cost_model", "LayerWork", "NetworkWork", "network_work", "work_from_counts",
]
