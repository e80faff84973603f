"""Time to first spike (``--coding ttfs``) in Norse.

* a hand-worked two-layer network: spike times, refractoriness, persistent
  currents, the silent-image gate, SynOps and both readouts;
* spike for spike and SynOp for SynOp per layer and step, per image output
  spikes, per-neuron spike maps, correct images per step (both readouts) and
  the decision figures, against the numpy reference
  (``effmodel_numpysim.ttfs``), on the seeded tiny networks of
  :mod:`effmodel.testing` (max, average, padded and overlapping pooling) and
  on a trained SmallCNN1;
* every neuron fires at most once (hypothesis);
* stepwise and layerwise give the same run; what TTFS refuses.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effmodel import plugins
from effmodel.errors import UsageError
from effmodel.simulation import ConvertedNetwork, LayerWeights, NormalisationSettings, SimulationConfig, simulate
from effmodel.specs import ArchitectureSpec, LayerSpec
from effmodel.testing import reference_simulator, tiny_images, tiny_network

T = 40


def _norse():
    return plugins.get_simulators()["norse"]


def _one_batch(sim, network, x, y, duration=T, readout="spikes", encoding="analog", options=None):
    """One batch straight through a session: its BatchResult, per-image output spikes included."""
    cfg = SimulationConfig(duration=duration, batch_size=len(x), coding="ttfs", readout=readout, record_spiketrains=True,
                           input_encoding=encoding, options=options or {})
    session = sim.open(network, cfg)
    try:
        return session.run_batch(x, y)
    finally:
        session.close()


def _hand_network() -> ConvertedNetwork:
    """Two pixels -> dense(2), identity weights -> dense(2), weights
    [[0.25, 0.125], [0.5, 0.5]] (row: hidden neuron), bias [0, 0.25]: every
    number a power of two, so float32 is exact."""
    spec = ArchitectureSpec(name="hand", dataset="tiny", input_shape=(1, 1, 2), epochs=0, layers=(
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="hidden", units=2),
        LayerSpec(type="dense", name="output", units=2, activation="softmax")))
    w = {"hidden": LayerWeights(np.eye(2, dtype=np.float32), np.zeros(2, np.float32)),
         "output": LayerWeights(np.array([[0.25, 0.125], [0.5, 0.5]], np.float32), np.array([0.0, 0.25], np.float32))}
    return ConvertedNetwork(spec=spec, weights=w, normalised_weights=w, scale_factors={}, normalisation=NormalisationSettings())


def test_hand_worked_network():
    """Pixels [0.5, 0.25] (analog): hidden currents 0.5 and 0.25, so hidden 0
    fires at step 2 and hidden 1 at step 4, once each (as IF neurons with
    reset by subtraction they would fire 4 + 2 times in 8 steps).  The output
    layer gets nothing before step 2 (no input has fired: not even its bias),
    then the held weights of the fired inputs plus the bias: step 2
    [0.25, 0.375], step 3 [0.5, 0.75], step 4 (hidden 1 fires too)
    [1.25, 1.625]: both fire at step 4.  Without the gate output 1 would have
    fired at step 3 (0.25, 0.625, 1.0).  SynOps: each hidden spike drives 2
    synapses once.  Readouts: ``spikes`` decides class 0 (lowest index of
    those firing) at step 4; ``potential`` class 1 (1.625 > 1.25), and before
    step 4 the higher potential: class 0 at step 1 (a tie at 0), 1 at steps 2-3."""
    net = _hand_network()
    x, y = np.array([[[[0.5, 0.25]]]], np.float32), np.array([0])
    r = _one_batch(_norse(), net, x, y, duration=8)
    np.testing.assert_array_equal(r.spikes_t["hidden"], [0, 1, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(r.spikes_t["output"], [0, 0, 0, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(r.synops_t["hidden"], [0, 2, 0, 2, 0, 0, 0, 0])
    np.testing.assert_array_equal(r.synops_t["output"], np.zeros(8))
    np.testing.assert_array_equal(r.output_spikes_t[0, 3], [1, 1])
    assert r.output_spikes_t.sum() == 2
    np.testing.assert_array_equal(r.spike_counts["hidden"], [[1, 1]])
    np.testing.assert_array_equal(r.correct_t, [0, 0, 0, 1, 1, 1, 1, 1])  # label 0: decided at step 4
    assert int(r.predictions[0]) == 0
    np.testing.assert_array_equal(r.extra["correct_t_potential"], [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(r.extra["decisions_t"], [0, 0, 0, 1, 0, 0, 0, 0])
    assert r.extra["synops_to_decision"] == 4 and r.extra["undecided_images"] == 0
    potential = _one_batch(_norse(), net, x, np.array([1]), duration=8, readout="potential")
    np.testing.assert_array_equal(potential.correct_t, [0, 1, 1, 1, 1, 1, 1, 1])  # label 1
    assert int(potential.predictions[0]) == 1
    short = _one_batch(_norse(), net, x, y, duration=3)  # stopped before any output spike: undecided, no class
    assert short.extra["undecided_images"] == 1 and short.extra["synops_to_decision"] == 0
    assert int(short.predictions[0]) == -1


def _padded_spec() -> ArchitectureSpec:
    """Overlapping 3x3/2 max pooling (11x11 -> 5x5) and a padded 2x2 one (5x5 -> 3x3)."""
    return ArchitectureSpec(name="overlap-pad", dataset="tiny", input_shape=(13, 13, 1), epochs=0, layers=(
        LayerSpec(type="conv2d", name="conv1", filters=4),
        LayerSpec(type="maxpool", name="pool1", pool=3, stride=2),
        LayerSpec(type="conv2d", name="conv2", filters=4, padding="same"),
        LayerSpec(type="maxpool", name="pool2", pool=2, padding="same"),
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="hidden", units=16),
        LayerSpec(type="dense", name="output", units=4, activation="softmax")))


CASES = {
    "max pooling": lambda: tiny_network(seed=3, pooling="max"),
    "average pooling": lambda: tiny_network(seed=3, pooling="avg"),
    "max pooling, --max2avg-pool": lambda: tiny_network(seed=5, pooling="max", max2avg_pool=True),
    "overlapping and padded max pooling": lambda: tiny_network(seed=1, spec=_padded_spec()),
}


def _assert_agree(got, ref, context=""):
    assert sorted(got.spikes_t) == sorted(ref.spikes_t)
    for name in ref.spikes_t:
        np.testing.assert_array_equal(got.spikes_t[name], ref.spikes_t[name], err_msg=f"{context} spikes of {name}")
        np.testing.assert_array_equal(got.synops_t[name], ref.synops_t[name], err_msg=f"{context} SynOps of {name}")
    np.testing.assert_array_equal(got.correct_t, ref.correct_t, err_msg=context)
    np.testing.assert_array_equal(got.predictions, ref.predictions, err_msg=context)
    for key in ("decisions_t", "synops_to_decision", "undecided_images"):
        np.testing.assert_array_equal(got.extra[key], ref.extra[key], err_msg=f"{context} {key}")


@pytest.mark.parametrize("case", sorted(CASES))
def test_agrees_with_the_numpy_reference_spike_for_spike(case):
    net = CASES[case]()
    x, y = tiny_images(net, n=10, seed=4)
    ref = _one_batch(reference_simulator(), net, x, y)
    got = _one_batch(_norse(), net, x, y, options={"threads": 1})
    assert sum(int(s.sum()) for s in ref.spikes_t.values()) > 300  # the networks do spike
    assert ref.extra["decisions_t"].sum() >= 5  # and most images decide: the readout is compared
    _assert_agree(got, ref, case)
    np.testing.assert_array_equal(got.output_spikes_t, ref.output_spikes_t)
    for name, fired in ref.spike_counts.items():  # which neuron fired, not only how many
        np.testing.assert_array_equal(got.spike_counts[name], fired, err_msg=f"{case} spike map of {name}")
    potential = _one_batch(_norse(), net, x, y, readout="potential", options={"threads": 1})
    ref_potential = _one_batch(reference_simulator(), net, x, y, readout="potential")
    np.testing.assert_array_equal(potential.correct_t, ref_potential.correct_t)
    np.testing.assert_array_equal(potential.predictions, ref_potential.predictions)
    np.testing.assert_array_equal(got.extra["correct_t_potential"], ref_potential.correct_t)


def test_batches_and_modes_do_not_change_the_run():
    """The silent-image gate is per image, so splitting a run into batches
    changes nothing; nor do layerwise chunks (held spikes across chunks)."""
    net = tiny_network(seed=3, pooling="max")
    x, y = tiny_images(net, n=10, seed=4)
    runs = []
    for batch, options in ((10, {"mode": "stepwise"}), (3, {"mode": "stepwise"}), (4, {"mode": "layerwise", "chunk_steps": 7}),
                           (10, {"mode": "layerwise"})):
        cfg = SimulationConfig(duration=T, batch_size=batch, coding="ttfs", options={"threads": 1, **options})
        runs.append(simulate(_norse(), net, [(x[i : i + batch], y[i : i + batch]) for i in range(0, 10, batch)], cfg))
    for r in runs[1:]:
        _assert_agree(_Flat(r), _Flat(runs[0]))


class _Flat:
    """A SimulationResult seen through the fields :func:`_assert_agree` compares."""

    def __init__(self, r):
        self.spikes_t, self.synops_t, self.correct_t = r.spikes_t, r.synops_t, r.correct_t
        self.predictions = np.zeros(1)  # simulate() keeps no predictions; compared per batch elsewhere
        self.extra = r.metadata["extra"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), pooling=st.sampled_from(["max", "avg"]), duration=st.integers(1, 60),
       encoding=st.sampled_from(["analog", "poisson"]))
def test_every_neuron_fires_at_most_once(seed, pooling, duration, encoding):
    """Whatever the weights, images, run length and input: no neuron of any
    layer fires twice (the Poisson input itself is no TTFS layer)."""
    net = tiny_network(seed=seed, pooling=pooling, percentile=50.0)  # a low percentile: strong currents, many spikes
    x, y = tiny_images(net, n=4, seed=seed + 1)
    r = _one_batch(_norse(), net, x, y, duration=duration, encoding=encoding, options={"threads": 1})
    for name, counts in r.spike_counts.items():
        if name != "input":
            assert counts.max(initial=0) <= 1, name
    assert np.asarray(r.output_spikes_t).sum(axis=1).max(initial=0) <= 1


@pytest.mark.slow
def test_agrees_with_the_numpy_reference_on_smallcnn1(network, test_batch):
    """The conftest's SmallCNN1 (trained briefly on MNIST, max pooling),
    10 test images, 30 steps: the same spikes and SynOps per layer and step."""
    x, y = test_batch
    x, y = x[:10], y[:10]
    ref = _one_batch(reference_simulator(), network, x, y, duration=30)
    got = _one_batch(_norse(), network, x, y, duration=30, options={"threads": 1})
    assert ref.extra["decisions_t"].sum() >= 8
    _assert_agree(got, ref, "SmallCNN1")
    np.testing.assert_array_equal(got.output_spikes_t, ref.output_spikes_t)


def test_what_ttfs_refuses():
    net = tiny_network(seed=3)
    cfg = SimulationConfig(duration=5, coding="ttfs", options={"kernels": "on"})
    with pytest.raises(UsageError, match="kernels=on needs .*--coding rate"):
        _norse().open(net, cfg)
    with pytest.raises(UsageError, match="ttfs neurons fire once and reset to zero: option neuron=lif applies to rate coding"):
        _norse().open(net, SimulationConfig(duration=5, coding="ttfs", options={"neuron": "lif"}))
    session = _norse().open(net, SimulationConfig(duration=5, coding="ttfs", options={"device": "cpu"}))
    assert not session.kernels  # auto: the torch reference runs TTFS
    session.close()
    assert "ttfs" in _norse().codings
