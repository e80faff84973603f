"""The contract under ``--coding ttfs``: a TTFS neuron fires at most once.

The broken simulator is the real numpy reference that claims TTFS but forgot
the refractory period: it runs rate coding (reset by subtraction, firing
again and again) under ``coding="ttfs"``.  The network is
:func:`effmodel.testing.tiny_network`: conv1 has 10 x 10 x 4 = 400 neurons,
so over a batch of 4 images at most 1,600 conv1 spikes fit TTFS.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from effmodel.contract import batch_problem
from effmodel.errors import PluginError
from effmodel.simulation import SimulationConfig, simulate
from effmodel.testing import reference_simulator, tiny_images, tiny_network

B = 4
RULE = "a TTFS neuron fires at most once"


class ForgetsRefractoriness:
    """Declares TTFS, simulates rate coding: its neurons fire more than once."""

    name = "forgets-refractoriness"
    codings = ("rate", "ttfs")
    description = "numpy rate coding passed off as ttfs (test)"

    def open(self, network, config):
        return reference_simulator().open(network, dataclasses.replace(config, coding="rate"))


@pytest.fixture(scope="module")
def net_and_images():
    pytest.importorskip("effmodel_numpysim")
    net = tiny_network(seed=0)
    return net, tiny_images(net, B, seed=1)


def _result(simulator, net, x, y, config):
    session = simulator.open(net, config)
    try:
        return session.run_batch(x, y)
    finally:
        session.close()


def test_spikes_over_neurons_x_images_are_refused_in_one_line(net_and_images):
    net, (x, y) = net_and_images
    config = SimulationConfig(duration=12, batch_size=B, coding="ttfs")
    with pytest.raises(PluginError) as info:
        simulate(ForgetsRefractoriness(), net, [(x, y)], config)
    message = str(info.value)
    assert "\n" not in message and message.startswith("simulator 'forgets-refractoriness' broke the simulator contract")
    assert "spikes_t['conv1']" in message and "400 neurons x 4 images = 1600" in message and RULE in message
    total = int(_result(ForgetsRefractoriness(), net, x, y, config).spikes_t["conv1"].sum())
    assert total > 1600 and f"{total} spikes in 12 steps" in message


def test_a_neuron_counted_twice_is_refused_when_totals_fit(net_and_images):
    """Over 3 steps the repeated spikes stay under every layer's neurons x images,
    so only the per-neuron counts of ``record_spiketrains`` can tell."""
    net, (x, y) = net_and_images
    config = SimulationConfig(duration=3, batch_size=B, coding="ttfs", record_spiketrains=True)
    broken = _result(ForgetsRefractoriness(), net, x, y, config)
    neurons = {"conv1": 400, "pool": 100, "conv2": 54, "hidden": 12, "output": 4}  # 10x10x4, 5x5x4, 3x3x6
    assert all(int(broken.spikes_t[k].sum()) <= n * B for k, n in neurons.items())  # the case this test is about
    assert broken.spike_counts["conv1"].max() > 1
    problem = batch_problem(broken, net.simulated_spec, config, B, y)
    assert problem.startswith("spike_counts['conv1']: neuron (") and RULE in problem and "\n" not in problem
    unrecorded = dataclasses.replace(broken, spike_counts=None)
    assert RULE not in (batch_problem(unrecorded, net.simulated_spec, config, B, y) or "")


def test_faithful_ttfs_and_rate_coding_keep_the_contract(net_and_images):
    net, (x, y) = net_and_images
    ttfs = SimulationConfig(duration=12, batch_size=B, coding="ttfs", record_spiketrains=True)
    r = simulate(reference_simulator(), net, [(x, y)], ttfs)
    assert max(int(c.max()) for c in r.first_batch_spike_counts.values()) == 1  # fired, once
    rate = dataclasses.replace(ttfs, coding="rate")  # many spikes per neuron are rate coding's normal
    repeated = _result(ForgetsRefractoriness(), net, x, y, rate)
    assert repeated.spike_counts["conv1"].max() > 1
    assert batch_problem(repeated, net.simulated_spec, rate, B, y) is None


def test_the_poisson_input_is_not_a_ttfs_layer(net_and_images):
    """Input pixels spike as under rate coding (in the numpy reference and in snntoolbox):
    more input spikes than pixels x images must not be refused."""
    net, (x, y) = net_and_images
    config = SimulationConfig(duration=40, batch_size=B, coding="ttfs", input_encoding="poisson", seed=2)
    r = _result(reference_simulator(), net, np.ones_like(x), y, config)  # white images: every pixel every step
    assert int(r.spikes_t["input"].sum()) == 40 * 100 * B > 100 * B
    assert batch_problem(r, net.simulated_spec, config, B, y) is None
