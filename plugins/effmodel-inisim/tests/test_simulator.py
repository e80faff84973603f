"""The inisim simulator on real MNIST with real snntoolbox (no mocks)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from effmodel.errors import SimulationError, UsageError
from effmodel.simulation import SimulationConfig, simulate

pytestmark = pytest.mark.slow

T = 20


def batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(x), size)]


def brute_fanout(spec, index):
    """Exact fan-out of every neuron of layer ``index``, independently of
    effmodel.counting: the gradient of the summed output of the next
    receiving layer with an all-ones kernel (TensorFlow's own padding rules)."""
    import tensorflow as tf

    shapes = spec.shapes()
    src = tuple(shapes[index][1])
    for layer in spec.layers[index + 1 :]:
        if layer.type in ("dropout", "flatten"):
            continue
        if layer.type == "dense":
            return np.full(src, layer.units)
        x = tf.Variable(tf.zeros((1, *src)))
        with tf.GradientTape() as tape:
            if layer.type == "conv2d":
                kernel = tf.ones((layer.kernel, layer.kernel, src[-1], layer.filters))
                y = tf.nn.conv2d(x, kernel, layer.stride, layer.padding.upper())
            else:  # a pooling neuron receives every input of its window
                y = tf.nn.avg_pool2d(x, layer.pool, layer.pool_stride, layer.padding.upper()) * layer.pool**2
            total = tf.reduce_sum(y)
        return np.rint(tape.gradient(total, x).numpy()[0]).astype(np.int64)
    return np.zeros(src, np.int64)


def test_end_to_end_through_core(inisim, small_network, small_trained, test_images):
    x, y = test_images
    config = SimulationConfig(duration=T, batch_size=16, record_spiketrains=True)  # 16 + 14 (padded)
    r = simulate(inisim, small_network, batches(x, y, 16), config)
    assert r.simulator == "inisim" and r.num_images == len(x) and r.correct_t.shape == (T,)
    assert set(r.synops_t) == {"conv2d_1", "maxpool_1", "dense_1", "dense_2"}
    assert r.predictions.shape == (len(x),) and set(np.unique(r.predictions)) <= set(range(-1, 10))
    assert r.correct_t[-1] == np.sum(r.predictions == y)
    # the 1-epoch ANN scores ~0.57; the SNN must be close to its parsed ANN on the same images
    ann_correct = r.metadata["extra"]["parsed_ann_correct"]
    assert r.accuracy > 0.3
    assert abs(r.correct_t[-1] - ann_correct) <= 0.2 * len(x)
    assert r.synops_t["dense_2"].sum() == 0 and r.spikes_t["dense_2"].sum() > 0  # output spikes, no synapses
    counts = r.first_batch_spike_counts
    assert counts["conv2d_1"].shape == (16, 26, 26, 32) and counts["maxpool_1"].shape == (16, 13, 13, 32)
    assert r.metadata["extra"]["snntoolbox_ann_ops"] > 0
    # every batch returned its output spikes, so the core kept each image's correctness per step
    assert r.correct_images.shape == (len(x), T) and r.correct_images.sum(axis=0).tolist() == r.correct_t.tolist()


def test_output_spikes_per_image_and_step_without_the_padding(inisim, small_network, test_images):
    """10 images in the fixed batch of 16: six zero images pad it, and must not appear."""
    x, y = test_images
    session = inisim.open(small_network, SimulationConfig(duration=T, batch_size=16, record_spiketrains=True))
    try:
        r = session.run_batch(x[:10], y[:10])
    finally:
        session.close()
    out = r.output_spikes_t
    assert out.shape == (10, T, 10) and set(np.unique(out)) <= {0, 1}
    assert out.sum() > 0
    # the same spikes as the output layer's own spiketrain variable, per image (spike_counts) and per step
    assert np.array_equal(out.sum(axis=1), r.spike_counts["dense_2"])
    assert np.array_equal(out.sum(axis=(0, 2)), r.spikes_t["dense_2"])


def test_cumulative_synops_positive_and_non_decreasing(inisim, small_network, test_images):
    x, y = test_images
    r = simulate(inisim, small_network, batches(x, y, 30), SimulationConfig(duration=T, batch_size=30))
    per_step = r.synops_per_step
    assert np.all(per_step >= 0) and per_step[-1] > 0
    cumulative = r.synops_cumulative
    assert cumulative[-1] > 0 and np.all(np.diff(cumulative) >= 0)


def test_synops_are_spikes_times_exact_fanout(inisim, medium_network, test_images):
    """MediumCNN1 has a 'same' conv -> 'valid' conv link, where borders matter."""
    x, y = test_images
    spec = medium_network.simulated_spec
    session = inisim.open(medium_network, SimulationConfig(duration=10, batch_size=20, record_spiketrains=True))
    try:
        r = session.run_batch(x[:20], y[:20])
    finally:
        session.close()
    assert r.spike_counts is not None
    for index, layer in enumerate(spec.layers):
        if layer.name not in r.synops_t:
            continue
        counts = r.spike_counts[layer.name]
        assert counts.sum() == r.spikes_t[layer.name].sum()
        expected = int((counts.sum(axis=0) * brute_fanout(spec, index)).sum())
        assert int(r.synops_t[layer.name].sum()) == expected, layer.name
    # snntoolbox's border-blind count overcounts the 'same' conv's spikes
    assert r.spikes_t["conv2d_1"].sum() > 0
    assert r.extra["snntoolbox_synops_t"].sum() > sum(v.sum() for v in r.synops_t.values())


def test_matches_snntoolbox_own_simulate(inisim, small_network, test_images):
    """Stepping the INI model here gives what snntoolbox's SNN.simulate gives."""
    x, y = test_images
    session = inisim.open(small_network, SimulationConfig(duration=T, batch_size=30))
    try:
        r = session.run_batch(x, y)
        snn = session.snn
        snn.reset(0)
        snn.synaptic_operations_b_t = np.zeros((snn.batch_size, snn._num_timesteps))
        out = snn.simulate(x_b_l=x, truth_b=y)
    finally:
        session.close()
    assert np.array_equal(snn.synaptic_operations_b_t.sum(axis=0).astype(np.int64), r.extra["snntoolbox_synops_t"])
    guesses = np.where(out.sum(axis=1) == 0, -1, np.argmax(out, axis=1))  # (B, T)
    assert np.array_equal((guesses == y[:, None]).sum(axis=0), r.correct_t)
    # snntoolbox returns running totals (B, K, T): their steps are the output spikes per step
    assert np.array_equal(np.diff(out, axis=2, prepend=0).transpose(0, 2, 1), r.output_spikes_t)


def test_fresh_workdirs_and_non_empty_refused(inisim, small_network, tmp_path):
    config = SimulationConfig(duration=2, batch_size=5)
    a, b = inisim.open(small_network, config), inisim.open(small_network, config)
    try:
        assert a.path != b.path and a.path.is_dir() and b.path.is_dir()
    finally:
        a.close()
        b.close()
    assert not a.path.exists() and not b.path.exists()

    given = tmp_path / "new" / "wd"
    s = inisim.open(small_network, SimulationConfig(duration=2, batch_size=5, workdir=given))
    s.close()
    assert (given / "ann.h5").is_file() and (given / "config").is_file()  # a given workdir is kept
    with pytest.raises(SimulationError, match="not empty"):
        inisim.open(small_network, SimulationConfig(duration=2, batch_size=5, workdir=given))


def test_clear_errors(inisim, small_network):
    with pytest.raises(UsageError) as info:
        simulate(inisim, small_network, [], SimulationConfig(duration=0))
    assert "duration must be a positive number" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError) as info:
        simulate(inisim, small_network, [], SimulationConfig(duration=3, batch_size=5))
    assert str(info.value) == "the test set is empty: nothing to simulate"
    with pytest.raises(UsageError, match="unknown normalisation"):
        inisim.open(small_network, SimulationConfig(duration=3, options={"normalisation": "bogus"}))


def test_poisson_input_counts_input_synops_and_is_seeded(inisim, small_network, test_images):
    x, y = test_images
    config = SimulationConfig(duration=10, batch_size=10, input_encoding="poisson", seed=3)
    r1 = simulate(inisim, small_network, batches(x[:10], y[:10], 10), config)
    r2 = simulate(inisim, small_network, batches(x[:10], y[:10], 10), config)
    assert r1.spikes_t["input"].sum() > 0
    assert r1.synops_t["input"].sum() > r1.spikes_t["input"].sum()  # fan-out 9*32 minus borders
    assert np.array_equal(r1.correct_t, r2.correct_t)
    assert all(np.array_equal(r1.synops_t[k], r2.synops_t[k]) for k in r1.synops_t)


def test_snntoolbox_normalisation_writes_float_scale_factors(inisim, small_network, test_images, tmp_path):
    x, y = test_images
    wd = tmp_path / "wd"
    config = SimulationConfig(duration=T, batch_size=30, workdir=wd, options={"normalisation": "snntoolbox"})
    r = simulate(inisim, small_network, batches(x, y, 30), config)
    files = list((wd / "normalization").glob("*.json"))
    assert len(files) == 1 and files[0].name == f"{small_network.normalisation.percentile}.json"
    scales = json.loads(files[0].read_text())
    assert all(isinstance(v, (int, float)) and v > 0 for v in scales.values())
    assert r.accuracy > 0.3


def test_online_normalisation_runs(inisim, small_network, test_images):
    x, y = test_images
    r = simulate(inisim, small_network, batches(x, y, 30), SimulationConfig(duration=10, batch_size=30, options={"normalisation": "online"}))
    per_step = r.synops_per_step
    assert per_step[0] > per_step[1:].max()  # thresholds start at 1% of v_thresh: a burst at the first step


def test_spiking_softmax_output(inisim, small_network, test_images):
    """snntoolbox's spiking softmax fires output neuron i with probability
    softmax(v)_i at every step, independently: the probabilities sum to 1,
    so an image gets one output spike per step on average, from the very
    first step (softmax of zero potentials is uniform).  IF/ReLU outputs
    (the default) need input to build up first and are deterministic."""
    x, y = test_images
    n = len(x)

    def run(softmax_to_relu: bool, seed: int = 0):
        config = SimulationConfig(duration=T, batch_size=n, seed=seed, options={"softmax_to_relu": softmax_to_relu})
        return simulate(inisim, small_network, batches(x, y, n), config)

    soft, relu = run(False), run(True)
    assert soft.metadata["extra"]["softmax_to_relu"] is False
    out = [k for k in soft.spikes_t if k != "input"][-1]
    total = int(soft.spikes_t[out].sum())
    # a sum of n*T Bernoulli(p) with sum(p) = n*T per step: mean n*T, variance < n*T
    assert abs(total - n * T) < 5 * np.sqrt(n * T), (total, n * T)
    assert abs(int(soft.spikes_t[out][0]) - n) < 5 * np.sqrt(n), soft.spikes_t[out][:3]
    assert int(relu.spikes_t[out][0]) == 0, relu.spikes_t[out][:3]  # the ReLU output is silent at step 1
    # both read out far above chance (0.1), near the ANN's accuracy on these images
    ann = soft.metadata["extra"]["parsed_ann_correct"] / n
    assert ann > 0.3 and soft.accuracy >= ann - 0.2 and relu.accuracy >= ann - 0.2, (ann, soft.accuracy, relu.accuracy)
