"""The numpy reference simulator: hand-computed spikes, SynOps and readouts
on networks small enough to follow step by step, then the contract checks;
then time-to-first-spike coding (``--coding ttfs``): hand-worked spike times,
SynOps and decisions, and the one-spike-per-neuron property on random networks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effmodel import (ArchitectureSpec, ConvertedNetwork, LayerSpec, LayerWeights, NormalisationSettings,
                      SimulationConfig, UsageError, fanout_map, spiking_layer_indices)
from effmodel.simulation import simulate
from effmodel.testing import tiny_images, tiny_network, tiny_spec
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


# --- time to first spike (--coding ttfs) -------------------------------------------


def decision_chain():
    """input (1,1,2) -> hidden dense(2), currents 1/4 and 3/8 -> output dense(2) with biases.

    output 0 <- hidden 0 (0.5), hidden 1 (0.25), bias 0.1
    output 1 <- hidden 0 (0),   hidden 1 (0.4),  bias 0.3
    """
    spec = ArchitectureSpec(name="ttfs-chain", dataset="tiny", input_shape=(1, 1, 2), layers=(
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="hidden", units=2),
        LayerSpec(type="dense", name="output", units=2, activation="softmax"),
    ))
    w = {"hidden": LayerWeights(np.diag([0.25, 0.375]).astype(np.float32), np.zeros(2, np.float32)),
         "output": LayerWeights(np.array([[0.5, 0.0], [0.25, 0.4]], np.float32), np.array([0.1, 0.3], np.float32))}
    return network(spec, w)


def test_each_neuron_fires_once_at_its_first_crossing_by_hand():
    # hidden 0 integrates 1/4: 0.25 0.5 0.75 1.0 -> fires at step 4, then never again
    #   (rate coding would fire again at 8: test_numpysim's dense_chain);
    # hidden 1 integrates 3/8: 0.375 0.75 1.125 -> fires at step 3, then never again.
    # A spike is a persistent current: from step 3 the outputs receive hidden 1's weights,
    # from step 4 hidden 0's too.  Steps 1-2: no hidden spike yet, so no current at all
    # (not even the bias):
    #   output 0: step 3: 0.25 + 0.1 = 0.35; step 4: + (0.5 + 0.25 + 0.1) = 1.2 -> fires at 4
    #   output 1: step 3: 0.4 + 0.3 = 0.7;   step 4: + (0 + 0.4 + 0.3) = 1.4    -> fires at 4
    #   (with the bias from step 1, output 1 would reach 0.3 0.6 1.3 and fire at 3)
    # SynOps: each hidden spike once x fan-out 2 (both outputs); the output layer has none.
    r = run(decision_chain(), np.ones((2, 1, 1, 2)), [0, 1], duration=6, coding="ttfs", record_spiketrains=True)
    assert r.spikes_t["hidden"].tolist() == [0, 0, 2, 2, 0, 0]  # two identical images
    assert r.synops_t["hidden"].tolist() == [0, 0, 4, 4, 0, 0]
    assert r.spikes_t["output"].tolist() == [0, 0, 0, 4, 0, 0]
    assert r.synops_t["output"].tolist() == [0] * 6
    assert r.spike_counts["hidden"].tolist() == [[1, 1], [1, 1]]
    assert r.spike_counts["output"].tolist() == [[1, 1], [1, 1]]
    # both outputs fire at step 4: a tie, the lowest index under the spikes readout;
    # no class before (counted wrong).  Image 0 (label 0) right from step 4, image 1 never.
    assert r.correct_t.tolist() == [0, 0, 0, 1, 1, 1]
    assert r.predictions.tolist() == [0, 0]
    # both images decide at step 4, each after 2 + 2 SynOps (one hidden spike x 2 at steps 3 and 4): 8 in all
    assert r.extra["decisions_t"].tolist() == [0, 0, 0, 2, 0, 0]
    assert r.extra["synops_to_decision"] == 8 and r.extra["undecided_images"] == 0


def test_potential_readout_under_ttfs_by_hand():
    # same network: steps 1-2 no output potential yet (0, 0): tie -> class 0, image 0 right;
    # step 3: potentials (0.35, 0.7) -> class 1, image 1 right; step 4: both fire, the tie goes
    # to the higher potential at firing (1.2 vs 1.4): class 1, fixed from then on.
    r = run(decision_chain(), np.ones((2, 1, 1, 2)), [0, 1], duration=6, coding="ttfs", readout="potential")
    assert r.correct_t.tolist() == [1, 1, 1, 1, 1, 1]
    assert r.predictions.tolist() == [1, 1]


def border_network():
    """input (3,3,1) -> conv1 1x1 (weight 1: the pixel is the current) -> conv2 3x3 'same'
    (all weights 1/2) -> max pool 2 'same' (pads the bottom and right) -> flatten -> output dense(2)."""
    spec = ArchitectureSpec(name="ttfs-borders", dataset="tiny", input_shape=(3, 3, 1), layers=(
        LayerSpec(type="conv2d", name="conv1", filters=1, kernel=1),
        LayerSpec(type="conv2d", name="conv2", filters=1, kernel=3, padding="same"),
        LayerSpec(type="maxpool", name="pool", pool=2, padding="same"),
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="output", units=2, activation="softmax"),
    ))
    # pool cells flatten as P00 P01 P10 P11; class 0 <- P11 (weight 1), class 1 <- P00, P01, P10 (1/4 each)
    out = np.array([[0.0, 0.25], [0.0, 0.25], [0.0, 0.25], [1.0, 0.0]], np.float32)
    w = {"conv1": LayerWeights(np.ones((1, 1, 1, 1), np.float32), np.zeros(1, np.float32)),
         "conv2": LayerWeights(np.full((3, 3, 1, 1), 0.5, np.float32), np.zeros(1, np.float32)),
         "output": LayerWeights(out, np.zeros(2, np.float32))}
    return network(spec, w)


def test_spike_times_and_exact_synops_with_borders_by_hand():
    # pixels (= conv1 currents):  1    1/2  0
    #                             1/2  1/4  0
    #                             0    0    0
    # conv1 fires: (0,0) at step 1; (0,1), (1,0) at 2; (1,1) at 4 (0.25 x 4); the zeros never.
    # conv1 fan-out into conv2 (3x3 'same' on 3x3): corner 4, edge 6, centre 9 targets, so
    # conv1 SynOps: step 1: 4; step 2: 6 + 6 = 12; step 4: 9.
    # conv2 current at (i,j) = 1/2 x (fired conv1 neurons in its 3x3 neighbourhood):
    #   step 1: (0,0),(0,1),(1,0),(1,1) see (0,0): 0.5 each;
    #   steps 2-3: (0,0),(0,1),(1,0),(1,1) see all three: 1.5; (0,2),(1,2) see (0,1): 0.5;
    #              (2,0),(2,1) see (1,0): 0.5; (2,2) sees none: 0;
    #   step 4 on: (1,1) is in every neighbourhood: +0.5 each.
    #   fires: the top-left four at step 2 (0.5 + 1.5 = 2.0); (0,2),(1,2),(2,0),(2,1) at 3
    #   (0 + 0.5 + 0.5); (2,2) at 5 (0.5 + 0.5 at steps 4, 5).  Fan-out into the pool: 1 each.
    # pool (windows P00 = rows 0-1 x cols 0-1, P01 = rows 0-1 x col 2 + pad, P10 = row 2 x cols 0-1
    #   + pad, P11 = (2,2) + pad) fires when its window's first input fires: P00 at 2, P01 and P10
    #   at 3, P11 at 5; fan-out 2 (both outputs) each.
    # output 1 gets 1/4 from step 2 (P00), 3/4 from step 3: 0.25, 1.0 -> fires at step 3: decided, class 1;
    # output 0 gets 1 from step 5: fires at 5 (the decision stays).
    x = np.array([[1.0, 0.5, 0.0], [0.5, 0.25, 0.0], [0.0, 0.0, 0.0]], np.float32).reshape(1, 3, 3, 1)
    r = run(border_network(), x, [1], duration=6, coding="ttfs", record_spiketrains=True)
    assert r.spikes_t["conv1"].tolist() == [1, 2, 0, 1, 0, 0]
    assert r.synops_t["conv1"].tolist() == [4, 12, 0, 9, 0, 0]
    assert r.spikes_t["conv2"].tolist() == [0, 4, 4, 0, 1, 0]
    assert r.synops_t["conv2"].tolist() == [0, 4, 4, 0, 1, 0]
    assert r.spikes_t["pool"].tolist() == [0, 1, 2, 0, 1, 0]
    assert r.synops_t["pool"].tolist() == [0, 2, 4, 0, 2, 0]
    assert r.spikes_t["output"].tolist() == [0, 0, 1, 0, 1, 0]
    assert r.spike_counts["conv1"][0, :, :, 0].tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    assert r.spike_counts["conv2"].sum() == 9 and r.spike_counts["conv2"].max() == 1
    assert r.correct_t.tolist() == [0, 0, 1, 1, 1, 1]
    # decided at step 3 after 4 + (12 + 4 + 2) + (4 + 4) = 30 SynOps
    assert r.extra["decisions_t"].tolist() == [0, 0, 1, 0, 0, 0] and r.extra["synops_to_decision"] == 30


def test_a_spike_crosses_every_layer_within_its_step():
    # all pixels 1: every conv1 neuron fires at step 1; conv2 sees all nine fired in the same
    # step (currents 2.0 corners, 3.0 edges, 4.5 centre) and fires at step 1 too, so does every
    # pool cell; output 0 gets 1.0 (P11) and fires, output 1 gets 3/4 and does not: class 0 at step 1.
    # SynOps at step 1: conv1 4 corners x 4 + 4 edges x 6 + centre 9 = 49; conv2 9 x 1; pool 4 x 2.
    r = run(border_network(), np.ones((1, 3, 3, 1), np.float32), [0], duration=1, coding="ttfs")
    assert [r.spikes_t[k].tolist() for k in ("conv1", "conv2", "pool", "output")] == [[9], [9], [4], [1]]
    assert [r.synops_t[k].tolist() for k in ("conv1", "conv2", "pool", "output")] == [[49], [9], [8], [0]]
    assert r.correct_t.tolist() == [1] and r.predictions.tolist() == [0]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), pooling=st.sampled_from(["max", "avg", ""]), size=st.integers(6, 9),
       channels=st.integers(1, 2), classes=st.integers(2, 5), duration=st.integers(1, 30),
       readout=st.sampled_from(["spikes", "potential"]), encoding=st.sampled_from(["analog", "poisson"]),
       batch=st.integers(1, 4))
def test_every_neuron_fires_at_most_once(seed, pooling, size, channels, classes, duration, readout, encoding, batch):
    """On random tiny networks through the core (its contract checks included):
    no neuron spikes twice, every counted spike is one of those, and each layer's
    SynOps are its spiking neurons' exact fan-outs."""
    spec = tiny_spec(pooling, input_shape=(size, size + 1, channels), classes=classes)
    net = tiny_network(seed=seed, spec=spec)
    x, y = tiny_images(net, n=batch + 1, seed=seed + 1)
    config = SimulationConfig(duration=duration, batch_size=batch + 1, coding="ttfs", readout=readout,
                              input_encoding=encoding, seed=seed, record_spiketrains=True)
    r = simulate(NumpySimulator(), net, [(x, y)], config)
    for i in spiking_layer_indices(net.simulated_spec):
        name = net.simulated_spec.layers[i].name
        counts = r.first_batch_spike_counts[name]
        assert counts.max() <= 1, name
        assert int(r.spikes_t[name].sum()) == int(counts.sum()), name
        assert int(r.synops_t[name].sum()) == int((counts * fanout_map(net.simulated_spec, i)[None]).sum()), name
    decided = r.metadata["extra"]["decisions_t"]
    assert int(decided.sum()) + r.metadata["extra"]["undecided_images"] == len(x)


def test_ttfs_spikes_less_than_rate_coding():
    # the point of the code: on the same network and images, far fewer spikes and SynOps
    net = tiny_network(seed=3)
    x, y = tiny_images(net, n=4)
    rate = run(net, x, y, duration=40)
    ttfs = run(net, x, y, duration=40, coding="ttfs")
    assert sum(v.sum() for v in ttfs.synops_t.values()) < sum(v.sum() for v in rate.synops_t.values())


def test_every_builtin_simulator_declares_rate_and_ttfs():
    from effmodel import plugins
    from effmodel.simulation import declared_codings

    sims = plugins.get_simulators()
    assert declared_codings(sims["numpy"]) == ("rate", "ttfs")
    for name in ("norse", "inisim"):
        if name in sims:
            assert declared_codings(sims[name]) == ("rate", "ttfs")

