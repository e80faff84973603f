"""Each image's output spikes per step (``BatchResult.output_spikes_t``) and
the ``potential`` readout's accuracy recorded beside any readout
(``extra["correct_t_potential"]``), both against the numpy reference
simulator (an independent implementation of the same IF network and readout
rules) on the seeded tiny networks of :mod:`effmodel.testing`."""

from __future__ import annotations

import numpy as np
import pytest

from effmodel import plugins
from effmodel.readout import decisions
from effmodel.simulation import SimulationConfig, simulate
from effmodel.testing import reference_simulator, tiny_images, tiny_network

T = 30


def _run(sim, network, x, y, readout="spikes", options=None, batch=4):
    cfg = SimulationConfig(duration=T, batch_size=batch, readout=readout, options=options or {}, seed=0)
    batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, len(x), batch)]
    return simulate(sim, network, batches, cfg)


def _session_output(sim, network, x, y, readout="spikes", options=None):
    """One batch through the session directly: its BatchResult (simulate() keeps no per-image spikes)."""
    session = sim.open(network, SimulationConfig(duration=T, batch_size=len(x), readout=readout, options=options or {}))
    try:
        return session.run_batch(x, y)
    finally:
        session.close()


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("kernels", ["on", "off"])
def test_output_spikes_per_image_equal_the_reference(pooling, kernels):
    net = tiny_network(seed=3, pooling=pooling)
    x, y = tiny_images(net, n=10, seed=4)
    norse = plugins.get_simulators()["norse"]
    got = _session_output(norse, net, x, y, options={"kernels": kernels, "threads": 1})
    ref = _session_output(reference_simulator(), net, x, y)
    out = np.asarray(got.output_spikes_t)
    assert out.shape == (10, T, 4)
    assert out.sum() > 20  # the comparison means something: the output layer spikes
    np.testing.assert_array_equal(out, ref.output_spikes_t)
    # and the core reads the simulator's own predictions out of them
    np.testing.assert_array_equal(decisions(out, "rate")[:, -1], got.predictions)


@pytest.mark.parametrize("readout", ["spikes", "potential"])
def test_correct_t_potential_equals_the_reference_potential_readout(readout):
    """Whatever ``--readout`` is, ``correct_t_potential`` is the numpy
    reference's ``correct_t`` under the ``potential`` readout, summed over
    batches; under ``potential`` it is the run's own ``correct_t``."""
    net = tiny_network(seed=3, pooling="max")
    x, y = tiny_images(net, n=12, seed=4)
    got = _run(plugins.get_simulators()["norse"], net, x, y, readout=readout, options={"threads": 1})
    ref = _run(reference_simulator(), net, x, y, readout="potential")
    potential = got.metadata["extra"]["correct_t_potential"]
    assert potential.shape == (T,)
    np.testing.assert_array_equal(potential, ref.correct_t)
    if readout == "potential":
        np.testing.assert_array_equal(potential, got.correct_t)
    else:  # the two rules do differ here before the output layer spikes: a swapped key would fail above
        assert not np.array_equal(potential, got.correct_t)
