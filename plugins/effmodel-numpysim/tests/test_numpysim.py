"""The numpy reference simulator: hand-computed spikes, SynOps and readouts
on networks small enough to follow step by step, then the contract checks."""

from __future__ import annotations

import numpy as np
import pytest

from effmodel import (ArchitectureSpec, ConvertedNetwork, LayerSpec, LayerWeights, NormalisationSettings,
                      SimulationConfig, UsageError)
from effmodel_numpysim.simulator import NumpySimulator


def network(spec, weights):
    """A ConvertedNetwork whose normalised weights are exactly ``weights``."""
    return ConvertedNetwork(spec=spec, weights=weights, normalised_weights=weights,
                            scale_factors={k: 1.0 for k in weights}, normalisation=NormalisationSettings())


def dense_chain():
    """input (1,1,2) -> hidden dense(2) with currents 1/4 and 3/8 -> output dense(2) copying the hidden spikes."""
    spec = ArchitectureSpec(name="chain", dataset="tiny", input_shape=(1, 1, 2), layers=(
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="hidden", units=2),
        LayerSpec(type="dense", name="output", units=2, activation="softmax"),
    ))
    w = {"hidden": LayerWeights(np.diag([0.25, 0.375]).astype(np.float32), np.zeros(2, np.float32)),
         "output": LayerWeights(np.eye(2, dtype=np.float32), np.zeros(2, np.float32))}
    return network(spec, w)


def run(net, x, y, **config):
    session = NumpySimulator().open(net, SimulationConfig(**config))
    try:
        return session.run_batch(np.asarray(x, np.float32), np.asarray(y))
    finally:
        session.close()


def test_if_neurons_reset_by_subtraction_by_hand():
    # hidden 0 integrates 1/4 per step: v reaches exactly 1 at steps 4 and 8 ('>=' fires);
    # hidden 1 integrates 3/8: 0.375, 0.75, 1.125 (spike at 3, 0.125 left), 0.5, 0.875,
    # 1.25 (spike at 6), 0.625, 1.0 (spike at 8).  Two identical images.
    x, y = np.ones((2, 1, 1, 2)), [0, 1]
    r = run(dense_chain(), x, y, duration=8, record_spiketrains=True)
    hidden = np.array([0, 0, 1, 1, 0, 1, 0, 2]) * 2
    assert r.spikes_t["hidden"].tolist() == hidden.tolist()
    assert r.synops_t["hidden"].tolist() == (hidden * 2).tolist()  # fan-out: 2 output neurons
    assert r.spikes_t["output"].tolist() == hidden.tolist()  # weight 1 passes every spike on at once
    assert r.synops_t["output"].tolist() == [0] * 8  # the output layer has no targets
    assert r.spike_counts["hidden"].tolist() == [[2, 3], [2, 3]]


def test_spikes_readout_no_class_before_the_first_output_spike():
    # output counts (class 0, class 1) after each step: (0,0) (0,0) (0,1) (1,1) (1,1) (1,2) (1,2) (2,3)
    # image 0 (label 0): no class, no class, 1, tie->0, tie->0, 1, 1, 1
    # image 1 (label 1): no class, no class, 1, 0, 0, 1, 1, 1
    r = run(dense_chain(), np.ones((2, 1, 1, 2)), [0, 1], duration=8)
    assert r.correct_t.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    assert r.predictions.tolist() == [1, 1]
    r = run(dense_chain(), np.ones((1, 1, 1, 2)), [0], duration=2)
    assert r.predictions.tolist() == [-1]  # no output spike yet: no class


def test_potential_readout_breaks_ties_by_membrane_potential():
    # the output neurons' potential is 0 after every step (input 0 or exactly 1, reset to 0),
    # so ties go to the lowest index: class 0 at steps 1, 2, 4, 5
    r = run(dense_chain(), np.ones((2, 1, 1, 2)), [0, 1], duration=8, readout="potential")
    assert r.correct_t.tolist() == [1, 1, 1, 1, 1, 1, 1, 1]  # image 0 right at 1,2,4,5; image 1 at 3,6,7,8


def test_spiking_max_pooling_gate_by_hand():
    # conv 1x1 passes pixel values as currents into 4 IF neurons; b = 1/2 at the top-left,
    # a = 5/8 beside it.  Spikes: b at 2,4,6,8; a at 2,4,5,7,8.  Counts so far
    # (b, a): (0,0) (1,1) (1,1) (2,2) (2,3) (3,3) (3,4) (4,5): ties go to b (first
    # in row-major order), then a leads from step 5 except the tie at 6.
    spec = ArchitectureSpec(name="pool", dataset="tiny", input_shape=(2, 2, 1), layers=(
        LayerSpec(type="conv2d", name="conv", filters=1, kernel=1),
        LayerSpec(type="maxpool", name="pool", pool=2),
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="output", units=2, activation="softmax"),
    ))
    w = {"conv": LayerWeights(np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)),
         "output": LayerWeights(np.array([[1.0, 0.0]], np.float32), np.zeros(2, np.float32))}
    x = np.array([[0.5, 0.625], [0.0, 0.0]], np.float32).reshape(1, 2, 2, 1)
    r = run(network(spec, w), x, [0], duration=8)
    conv = [0, 2, 0, 2, 1, 1, 1, 2]
    pool = [0, 1, 0, 1, 1, 1, 1, 1]  # winners: b b b b a b(tie) a a
    assert r.spikes_t["conv"].tolist() == conv
    assert r.synops_t["conv"].tolist() == conv  # each conv neuron feeds one pooling window
    assert r.spikes_t["pool"].tolist() == pool
    assert r.synops_t["pool"].tolist() == [2 * s for s in pool]  # into 2 output neurons


def test_unknown_option_is_one_line():
    with pytest.raises(UsageError, match="numpy simulator takes no option speed"):
        NumpySimulator().open(dense_chain(), SimulationConfig(duration=2, options={"speed": 1}))


def test_passes_check_simulator_contract_checks():
    from effmodel.testing import check_simulator

    result = check_simulator(NumpySimulator(), compare=False)
    assert set(result.cases) == {"max pooling", "max pooling, --max2avg-pool", "average pooling", "poisson input"}
    poisson, _ = result.cases["poisson input"]
    assert "input" in poisson.spikes_t and poisson.spikes_t["input"].sum() > 0
