"""``--coding ttfs`` in INIsim: snntoolbox's ttfs backend, counted exactly.

First hand-worked networks small enough to follow step by step (the same
two networks the numpy reference's tests work by hand, so both simulators
are held to the same figures, worked out here again), then the per-image
input gate against snntoolbox's per-batch one, the one-spike-per-neuron
property on a trained network, and the refusals.
"""

from __future__ import annotations

import numpy as np
import pytest

from effmodel import ArchitectureSpec, ConvertedNetwork, LayerSpec, LayerWeights, NormalisationSettings
from effmodel.counting import fanout_map, spiking_layer_indices
from effmodel.errors import UsageError
from effmodel.simulation import SimulationConfig, declared_codings, simulate

pytestmark = pytest.mark.slow


def network(spec, weights):
    """A ConvertedNetwork whose normalised weights are exactly ``weights``."""
    return ConvertedNetwork(spec=spec, weights=weights, normalised_weights=weights,
                            scale_factors={k: 1.0 for k in weights}, normalisation=NormalisationSettings())


def run(inisim, net, x, y, **config):
    config.setdefault("batch_size", len(x))
    session = inisim.open(net, SimulationConfig(coding="ttfs", **config))
    try:
        return session.run_batch(np.asarray(x, np.float32), np.asarray(y))
    finally:
        session.close()


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


def test_inisim_declares_rate_and_ttfs(inisim):
    assert declared_codings(inisim) == ("rate", "ttfs")


def test_each_neuron_fires_once_and_the_first_output_spike_decides_by_hand(inisim):
    # hidden 0 integrates 1/4: 0.25 0.5 0.75 1.0 -> fires at step 4, then never again
    #   (rate coding would fire it again at step 8); hidden 1 integrates 3/8: 0.375 0.75 1.125 -> step 3.
    # From its spike on, a hidden neuron drives the outputs at every step (persistent current).
    # Steps 1-2: no hidden spike yet, so the outputs get no current, not even their bias:
    #   output 0: step 3: 0.25 + 0.1 = 0.35; step 4: + (0.5 + 0.25 + 0.1) = 1.2 -> fires at 4
    #   output 1: step 3: 0.4 + 0.3 = 0.7;   step 4: + (0 + 0.4 + 0.3) = 1.4    -> fires at 4
    # SynOps: each hidden spike once x fan-out 2; the output layer has no synapses.
    # Both outputs fire at step 4: the lowest index decides (class 0); no class before.
    # Image 0 (label 0) is right from step 4, image 1 (label 1) never.  A batch of 3 pads one zero image.
    r = run(inisim, decision_chain(), np.ones((2, 1, 1, 2)), [0, 1], duration=6, batch_size=3, record_spiketrains=True)
    assert r.spikes_t["hidden"].tolist() == [0, 0, 2, 2, 0, 0]
    assert r.synops_t["hidden"].tolist() == [0, 0, 4, 4, 0, 0]
    assert r.spikes_t["output"].tolist() == [0, 0, 0, 4, 0, 0]
    assert r.synops_t["output"].tolist() == [0] * 6
    assert r.spike_counts["hidden"].tolist() == [[1, 1], [1, 1]]
    assert r.spike_counts["output"].tolist() == [[1, 1], [1, 1]]
    assert r.output_spikes_t[:, 3].tolist() == [[1, 1], [1, 1]] and r.output_spikes_t.sum() == 4
    assert r.correct_t.tolist() == [0, 0, 0, 1, 1, 1]
    assert r.predictions.tolist() == [0, 0]
    # both images decide at step 4, each after 2 + 2 SynOps (a hidden spike x 2 at steps 3 and 4): 8 in all
    assert r.extra["decisions_t"].tolist() == [0, 0, 0, 2, 0, 0]
    assert r.extra["synops_to_decision"] == 8 and r.extra["undecided_images"] == 0


def test_spike_times_and_exact_synops_with_borders_by_hand(inisim):
    # pixels (= conv1 currents):  1    1/2  0
    #                             1/2  1/4  0
    #                             0    0    0
    # conv1 fires: (0,0) at step 1; (0,1), (1,0) at 2; (1,1) at 4 (0.25 x 4); the zeros never.
    # conv1 fan-out into conv2 (3x3 'same' on 3x3): corner 4, edge 6, centre 9 targets, so
    # conv1 SynOps: step 1: 4; step 2: 6 + 6 = 12; step 4: 9.
    # conv2 current at (i,j) = 1/2 x (fired conv1 neurons in its 3x3 neighbourhood):
    #   step 1: the top-left four see (0,0): 0.5 each;
    #   steps 2-3: the top-left four see all three: 1.5; (0,2),(1,2) see (0,1): 0.5;
    #              (2,0),(2,1) see (1,0): 0.5; (2,2) sees none: 0;
    #   step 4 on: (1,1) is in every neighbourhood: +0.5 each.
    #   fires: the top-left four at step 2 (0.5 + 1.5 = 2.0); (0,2),(1,2),(2,0),(2,1) at 3
    #   (0 + 0.5 + 0.5); (2,2) at 5 (0.5 + 0.5 at steps 4, 5).  Fan-out into the pool: 1 each.
    # pool (P00 = rows 0-1 x cols 0-1, P01 = rows 0-1 x col 2 + pad, P10 = row 2 x cols 0-1 + pad,
    #   P11 = (2,2) + pad) fires when its window's first input fires: P00 at 2, P01 and P10 at 3,
    #   P11 at 5; fan-out 2 (both outputs) each.
    # output 1 gets 1/4 from step 2 (P00), 3/4 from step 3: 0.25, 1.0 -> fires at step 3: class 1;
    # output 0 gets 1 from step 5: fires at 5 (the decision stays).
    # decided at step 3 after 4 + (12 + 4 + 2) + (4 + 4) = 30 SynOps
    x = np.array([[1.0, 0.5, 0.0], [0.5, 0.25, 0.0], [0.0, 0.0, 0.0]], np.float32).reshape(1, 3, 3, 1)
    r = run(inisim, border_network(), x, [1], duration=6, record_spiketrains=True)
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
    assert r.extra["decisions_t"].tolist() == [0, 0, 1, 0, 0, 0] and r.extra["synops_to_decision"] == 30


def test_the_input_gate_per_image_or_per_batch_by_hand(inisim):
    # decision_chain with image 0 all ones (as above) and image 1 all zeros (label 1).
    # Per image (default): image 1's layers never see an input spike, so they get no current: it never decides.
    # Per batch (snntoolbox's rule): from step 3 image 0's hidden spikes open the output layer's gate for the
    # whole batch, so image 1's outputs integrate their biases alone: output 1: 0.3 0.6 0.9 1.2 at steps
    # 3-6 -> fires at step 6, class 1 (right); output 0: 0.1 x 4 = 0.4, silent.  Image 1's hidden layer
    # gets W 0 + 0 = 0: silent under both rules.
    x, y = np.stack([np.ones((1, 1, 2)), np.zeros((1, 1, 2))]), [0, 1]
    image = run(inisim, decision_chain(), x, y, duration=6)
    batch = run(inisim, decision_chain(), x, y, duration=6, options={"ttfs_gate": "batch"})
    assert image.extra["ttfs_gate"] == "image" and batch.extra["ttfs_gate"] == "batch"
    assert image.output_spikes_t[1].sum() == 0 and image.predictions.tolist() == [0, -1]
    assert image.correct_t.tolist() == [0, 0, 0, 1, 1, 1] and image.extra["undecided_images"] == 1
    assert batch.output_spikes_t[1].tolist() == [[0, 0]] * 5 + [[0, 1]]
    assert batch.predictions.tolist() == [0, 1] and batch.correct_t.tolist() == [0, 0, 0, 1, 1, 2]
    assert batch.extra["decisions_t"].tolist() == [0, 0, 0, 1, 0, 1] and batch.extra["undecided_images"] == 0
    # image 0 alone: identical under both rules
    assert np.array_equal(image.output_spikes_t[0], batch.output_spikes_t[0])
    assert image.spikes_t["hidden"].tolist() == batch.spikes_t["hidden"].tolist() == [0, 0, 1, 1, 0, 0]
    # image 1 in a batch of its own: snntoolbox's rule is the per-image rule, it never decides
    alone = run(inisim, decision_chain(), x[1:], y[1:], duration=6, batch_size=1, options={"ttfs_gate": "batch"})
    assert alone.output_spikes_t.sum() == 0 and alone.extra["undecided_images"] == 1


def test_every_neuron_fires_at_most_once_on_a_trained_network(inisim, small_network, test_images):
    """SmallCNN1 (1 epoch), 30 images, through the core (its contract checks included): no neuron spikes
    twice, every counted spike is one of those, and each layer's SynOps are its neurons' exact fan-outs."""
    x, y = test_images
    T = 40
    config = SimulationConfig(duration=T, batch_size=30, coding="ttfs", record_spiketrains=True)
    r = simulate(inisim, small_network, [(x, y)], config)
    spec = small_network.simulated_spec
    for i in spiking_layer_indices(spec):
        name = spec.layers[i].name
        counts = r.first_batch_spike_counts[name]
        assert counts.max() <= 1, name
        assert int(r.spikes_t[name].sum()) == int(counts.sum()) > 0, name
        assert int(r.synops_t[name].sum()) == int((counts * fanout_map(spec, i)[None]).sum()), name
    extra = r.metadata["extra"]
    assert int(extra["decisions_t"].sum()) + extra["undecided_images"] == len(x)
    assert extra["undecided_images"] < len(x) and r.accuracy > 0.3  # the network decides, mostly right
    # a decided image's class never changes: the correct count can only grow
    assert np.all(np.diff(r.correct_t) >= 0)


def test_results_do_not_depend_on_the_batch_size(inisim, small_network, test_images):
    """7 images at once, or in chunks of 3 (3 + 3 + 1 padded with two zero images): every figure
    is the same (with the input gate per image, on any network), and the chunks' decision
    figures add up."""
    x, y = test_images
    whole, chunked = (run(inisim, small_network, x[:7], y[:7], duration=20, batch_size=b, record_spiketrains=True)
                      for b in (7, 3))
    for field in ("spikes_t", "synops_t"):
        for layer, want in getattr(whole, field).items():
            assert getattr(chunked, field)[layer].tolist() == want.tolist(), (field, layer)
    for layer, want in whole.spike_counts.items():
        assert np.array_equal(chunked.spike_counts[layer], want), layer
    assert np.array_equal(chunked.output_spikes_t, whole.output_spikes_t)
    assert chunked.correct_t.tolist() == whole.correct_t.tolist()
    assert chunked.predictions.tolist() == whole.predictions.tolist()
    assert chunked.extra["decisions_t"].tolist() == whole.extra["decisions_t"].tolist()
    assert int(whole.extra["decisions_t"].sum()) + whole.extra["undecided_images"] == 7
    assert chunked.extra["synops_to_decision"] == whole.extra["synops_to_decision"] > 0
    assert chunked.extra["undecided_images"] == whole.extra["undecided_images"]


def test_rate_coding_fires_again_where_ttfs_does_not(inisim, small_network, test_images):
    """The same network and images under rate coding: some neuron fires more than once (so the
    at-most-once property above is the code's, not the network's)."""
    x, y = test_images
    r = simulate(inisim, small_network, [(x[:10], y[:10])],
                 SimulationConfig(duration=40, batch_size=10, record_spiketrains=True))
    assert max(int(c.max()) for c in r.first_batch_spike_counts.values()) > 1


def test_snntoolbox_normalisation_under_ttfs(inisim, small_network, test_images):
    """snntoolbox normalises the trained model itself; its ttfs backend then simulates it."""
    x, y = test_images
    config = SimulationConfig(duration=30, batch_size=30, coding="ttfs", record_spiketrains=True,
                              options={"normalisation": "snntoolbox"})
    r = simulate(inisim, small_network, [(x, y)], config)
    assert max(int(c.max()) for c in r.first_batch_spike_counts.values()) == 1
    assert r.metadata["extra"]["normalisation"] == "snntoolbox" and r.accuracy > 0.3


def test_unsupported_ttfs_options_are_one_line(inisim, small_network):
    cases = {"softmax_to_relu": (False, "fire more than once"), "normalisation": ("online", "no online normalisation")}
    for option, (value, words) in cases.items():
        with pytest.raises(UsageError) as info:
            inisim.open(small_network, SimulationConfig(duration=3, coding="ttfs", options={option: value}))
        assert words in str(info.value) and "\n" not in str(info.value), option
    with pytest.raises(UsageError, match="unknown ttfs_gate 'sample'"):
        inisim.open(small_network, SimulationConfig(duration=3, coding="ttfs", options={"ttfs_gate": "sample"}))
