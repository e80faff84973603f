"""The core's spike-count readout (effmodel.readout) and the output-spikes contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from effmodel.contract import batch_problem
from effmodel.readout import correct_per_image, decisions, pack_correct, unpack_correct


def _spikes(B, T, K, events):
    out = np.zeros((B, T, K), np.int8)
    for b, t, k in events:
        out[b, t, k] = 1
    return out


def test_rate_readout_by_hand():
    # image 0: class 2 spikes at step 1, class 1 at steps 2 and 3 -> -? no: 2, tie (1 vs 1 -> lowest 1), then 1
    # image 1: nothing until step 3, where classes 0 and 2 spike together -> lowest index 0
    out = _spikes(2, 4, 3, [(0, 0, 2), (0, 1, 1), (0, 2, 1), (1, 2, 0), (1, 2, 2)])
    assert decisions(out, "rate").tolist() == [[2, 1, 1, 1], [-1, -1, 0, 0]]
    assert correct_per_image(out, [1, 2], "rate").tolist() == [[False, True, True, True], [False] * 4]


def test_ttfs_readout_is_fixed_at_the_first_output_spike():
    # image 0: class 2 fires first (step 2); class 0 fires later: the decision stays 2 (the rate rule would say 0)
    # image 1: two members agree on class 1 at step 1, one says 0: the most spikes at that step wins
    out = np.zeros((2, 4, 3), np.int8)
    out[0, 1, 2] = 1
    out[0, 3, 0] = 1
    out[1, 0, 1] = 2
    out[1, 0, 0] = 1
    assert decisions(out, "ttfs").tolist() == [[-1, 2, 2, 2], [1, 1, 1, 1]]
    assert decisions(out, "rate")[0].tolist() == [-1, 2, 2, 0]


def test_unknown_coding_and_bad_shape_are_refused():
    with pytest.raises(ValueError, match="coding 'burst'"):
        decisions(np.zeros((1, 2, 3)), "burst")
    with pytest.raises(ValueError, match="shape"):
        decisions(np.zeros((2, 3)), "rate")


def test_packed_correctness_round_trips_and_is_compact():
    rng = np.random.default_rng(0)
    # a realistic matrix: each image becomes correct for good at some step (10,000 images x 150 steps)
    settle = rng.integers(0, 150, size=10_000)
    correct = np.arange(150)[None, :] >= settle[:, None]
    correct[rng.random(10_000) < 0.02] = False  # a few never right
    blob = pack_correct(correct)
    assert np.array_equal(unpack_correct(blob, 10_000, 150), correct)
    assert len(blob) < 100_000  # the budget per item


@pytest.fixture(scope="module")
def numpy_batch():
    from effmodel.simulation import SimulationConfig
    from effmodel.testing import reference_simulator, tiny_images, tiny_network

    network = tiny_network(seed=0, pooling="max")
    x, y = tiny_images(network, 8, seed=1)
    config = SimulationConfig(duration=12, batch_size=len(x))
    session = reference_simulator().open(network, config)
    return network, config, x, y, session.run_batch(x, y)


def test_the_numpy_simulator_keeps_the_output_spikes_contract(numpy_batch):
    network, config, x, y, result = numpy_batch
    assert result.output_spikes_t is not None
    assert batch_problem(result, network.simulated_spec, config, len(x), labels=y) is None
    # two routes to the same correct counts: the simulator's own readout and the core's
    assert np.array_equal(correct_per_image(result.output_spikes_t, y).sum(axis=0), result.correct_t)


def test_output_spikes_that_contradict_the_result_are_refused(numpy_batch):
    network, config, x, y, result = numpy_batch
    spec = network.simulated_spec
    out = np.asarray(result.output_spikes_t)
    shifted = np.roll(out, 1, axis=2)  # same spike totals, other classes
    problem = batch_problem(dataclasses.replace(result, output_spikes_t=shifted), spec, config, len(x), labels=y)
    assert problem and ("predictions" in problem or "correct_t" in problem)
    extra = out.copy()
    b, t, k = np.argwhere(extra == 0)[0]
    extra[b, t, k] = 1
    problem = batch_problem(dataclasses.replace(result, output_spikes_t=extra), spec, config, len(x), labels=y)
    assert problem and "output spikes at step" in problem
    wrong_shape = out[:, :-1]
    problem = batch_problem(dataclasses.replace(result, output_spikes_t=wrong_shape), spec, config, len(x))
    assert problem and "expected shape" in problem
    doubled = out * 2
    problem = batch_problem(dataclasses.replace(result, output_spikes_t=doubled), spec, config, len(x))
    assert problem and "0 or 1 spike" in problem
    wrong_correct = dataclasses.replace(result, correct_t=np.asarray(result.correct_t) + (np.asarray(result.correct_t) < len(x)))
    problem = batch_problem(wrong_correct, spec, config, len(x), labels=y)
    assert problem and problem.startswith("correct_t")


def test_simulate_keeps_each_images_correctness():
    from effmodel.simulation import SimulationConfig, simulate
    from effmodel.testing import reference_simulator, tiny_images, tiny_network

    network = tiny_network(seed=0, pooling="max")
    x, y = tiny_images(network, 8, seed=1)
    config = SimulationConfig(duration=12, batch_size=3)
    batches = [(x[i:i + 3], y[i:i + 3]) for i in range(0, len(x), 3)]
    result = simulate(reference_simulator(), network, batches, config)
    assert result.correct_images.shape == (len(x), 12)
    assert np.array_equal(result.correct_images.sum(axis=0), result.correct_t)


def test_no_per_image_correctness_under_the_potential_readout():
    """The core reads output spikes by the spike-count rule only: a run read out by the membrane
    potential keeps no per-image matrix (it would contradict its own correct_t)."""
    from effmodel.simulation import SimulationConfig, simulate
    from effmodel.testing import reference_simulator, tiny_images, tiny_network

    network = tiny_network(seed=0, pooling="max")
    x, y = tiny_images(network, 8, seed=1)
    result = simulate(reference_simulator(), network, [(x, y)], SimulationConfig(duration=4, readout="potential"))
    assert result.correct_images is None
    assert simulate(reference_simulator(), network, [(x, y)], SimulationConfig(duration=4)).correct_images is not None
