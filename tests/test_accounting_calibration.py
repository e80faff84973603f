"""Calibration of the fair accounting against published figures (issue 22).

Dampfhoffer et al., "Are SNNs really more energy-efficient than ANNs? An
in-depth hardware-aware study", IEEE TETCI 7(3):731-741, 2023, abstract:
SNNs with the IF model "can compete with efficient ANN implementations when
there is a very high spike sparsity, i.e. between 0.15 and 1.38 spikes per
synapse per inference, depending on the ANN implementation".

Only the abstract is in the project's library, not the paper's tables, so
the test below cannot rebuild one of their configurations figure by figure.
It checks what the abstract allows: effmodel's break-even, in their unit,
for an event-driven IF SNN (no leak, so no per-step update: ``neuron_update
= 0``; input spikes rather than an analog first layer: ``first_layer =
excluded``) against the ANN under each dataflow preset, on the report's
reference networks with one SynOp per synapse spread uniformly (their
assumption of a uniform spike rate).  docs/accounting.md ("Calibration")
explains where effmodel's model differs from theirs and why one network falls
just below their range.

Lemaire et al. 2022 (ICONIP, "An analytical estimation of spiking neural
networks energy efficiency") and Rueckauer et al. 2017 (Front. Neurosci.
11:682) are not calibrated here: the library holds their abstracts only
(Lemaire: "6 to 8 times more efficient than their FNN counterparts";
Rueckauer: "more than 2x reductions in operations"), both relative figures
for networks and spike counts that are not given.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from effmodel.accounting import work_from_counts
from effmodel.accounting.ops import count_network
from effmodel.accounting.reprice import registered_cost_models
from effmodel.paths import architectures_dir
from effmodel.specs import load_spec_file

DAMPFHOFFER_RANGE = (0.15, 1.38)  # spikes (SynOps) per synapse per inference at break-even, abstract
DATAFLOWS = ("dataflow-45nm-fp32-no-reuse", "dataflow-45nm-fp32-ideal-reuse", "dataflow-45nm-fp32-row-stationary")


def uniform_work(name: str):
    """The reference network ``name`` with one SynOp per synapse into every
    layer but the first and one spike per unit (scaled by the break-even)."""
    spec = load_spec_file(next(architectures_dir().glob(f"*-{name}.toml")))
    w = work_from_counts(count_network(spec))
    return replace(w, steps=1, layers=tuple(
        replace(l, steps=1, synops=0.0 if l.first else l.dense_ops, spikes_in=0.0 if l.first else float(l.inputs),
                spikes_out=float(l.neurons)) for l in w.layers))


def if_model(name: str):
    return replace(registered_cost_models()[name], neuron_update=0.0, first_layer="excluded", ranges={})


@pytest.mark.parametrize("network", ["SmallCNN1", "MediumCNN1", "SmallCNN2", "MediumCNN2", "LargeCNN2", "DeepCNN2"])
def test_break_even_within_dampfhoffer_range(network):
    w = uniform_work(network)
    lo, hi = DAMPFHOFFER_RANGE
    found = {n: if_model(n).break_even_synops_per_synapse(w) for n in DATAFLOWS}
    for name, be in found.items():
        assert be is not None and lo <= be <= hi, (network, name, be)
    # more reuse for the ANN asks more sparsity of the SNN (a lower break-even), as in their study
    assert found["dataflow-45nm-fp32-ideal-reuse"] <= found["dataflow-45nm-fp32-no-reuse"]


def test_largest_mnist_networks_fall_just_below_with_ideal_reuse():
    # LargeCNN1 and DeepCNN1 are convolution-bound: 3.48 M of their 3.53 M synapses sit in four convolutions
    # with 160 to 9,248 weights, each reused at every output position. The ideal-reuse ANN reads each weight
    # once (its memory falls from 59 to 2 uJ), while the event-driven SNN reads a weight and reads and writes
    # a membrane per SynOp; so it needs about 0.10 SynOps per synapse, below the published range by a factor
    # 1.4. docs/accounting.md ("Calibration") explains it; the test pins it so that a change is seen.
    for network in ("LargeCNN1", "DeepCNN1"):
        be = if_model("dataflow-45nm-fp32-ideal-reuse").break_even_synops_per_synapse(uniform_work(network))
        assert 0.05 < be < DAMPFHOFFER_RANGE[0], (network, be)
        be_none = if_model("dataflow-45nm-fp32-no-reuse").break_even_synops_per_synapse(uniform_work(network))
        assert DAMPFHOFFER_RANGE[0] <= be_none <= DAMPFHOFFER_RANGE[1]


def test_ideal_reuse_reproduces_the_issue_audit():
    # Issue 22's audit, worked out independently of this code: with each weight and input read once per layer
    # from the fair-45nm-fp32 energy table, the ANN of LargeCNN1 and DeepCNN1 falls from 376.6 to 27.7 uJ
    # (quoted to one decimal: within 0.1 uJ, the last digit shown)
    fair = registered_cost_models()["fair-45nm-fp32"]
    for network in ("LargeCNN1", "DeepCNN1"):
        w = uniform_work(network)
        assert fair.breakdown(w).ann.total / 1e6 == pytest.approx(376.6, abs=0.1)
        assert replace(fair, dataflow="ideal-reuse").breakdown(w).ann.total / 1e6 == pytest.approx(27.7, abs=0.1)
