"""Adaptive spiking neurons (``--option neuron=adaptive``, Zambrano et al.
2019) and reset to zero (``--option reset=zero``) in Norse.

* IF with reset to zero against reset by subtraction, by hand;
* the adaptive neuron against its kernel form on constant input (sums of
  kernels over past spikes, not the module's recursive filters), and its
  first spikes by hand;
* the conversion rule's spike height against the published figure;
* spike for spike, SynOp for SynOp and readout for readout against the
  numpy reference's adaptive neurons (``effmodel_numpysim.adaptive``;
  skipped where the installed reference has none);
* what the options refuse, in one line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from effmodel import plugins
from effmodel.errors import UsageError
from effmodel.simulation import ConvertedNetwork, LayerWeights, NormalisationSettings, SimulationConfig
from effmodel.specs import ArchitectureSpec, LayerSpec
from effmodel.testing import reference_simulator, tiny_images, tiny_network
from effmodel_norse.neurons import AsnParameters, spike_height


def _norse():
    return plugins.get_simulators()["norse"]


def _one_batch(sim, network, x, y, duration, readout="spikes", options=None, threads=True):
    opts = {**(options or {}), **({"threads": 1} if threads else {})}
    cfg = SimulationConfig(duration=duration, batch_size=len(x), readout=readout, record_spiketrains=True, options=opts)
    session = sim.open(network, cfg)
    try:
        return session.run_batch(x, y)
    finally:
        session.close()


def _input_layer(currents, biases) -> ConvertedNetwork:
    """Input (1, 1, k) of ones -> dense(k) with diagonal weights: neuron j is
    a first-layer neuron with the constant current ``currents[j]`` and bias
    ``biases[j]``."""
    k = len(currents)
    spec = ArchitectureSpec(name="asn", dataset="tiny", input_shape=(1, 1, k), epochs=0, layers=(
        LayerSpec(type="flatten", name="flatten"), LayerSpec(type="dense", name="output", units=k, activation="softmax")))
    w = {"output": LayerWeights(np.diag(currents).astype(np.float32), np.asarray(biases, np.float32))}
    return ConvertedNetwork(spec=spec, weights=w, normalised_weights=w, scale_factors={}, normalisation=NormalisationSettings())


def _spike_times(result):
    """Per output neuron, the 1-based steps it fired at (one image)."""
    spikes = np.asarray(result.output_spikes_t)[0]
    return [(np.flatnonzero(spikes[:, j]) + 1).tolist() for j in range(spikes.shape[1])]


def test_if_reset_to_zero_by_hand():
    """Current 0.75 (exact in binary) for 8 steps.  Subtraction: v = .75,
    1.5 -> .5, 1.25 -> .25, 1.0 -> 0, .75, 1.5 -> .5, 1.25 -> .25, 1.0 -> 0:
    spikes at 2, 3, 4, 6, 7, 8.  Zero: .75, 1.5 -> 0, .75, 1.5 -> 0, ...:
    spikes at 2, 4, 6, 8 (the charge above threshold is lost)."""
    net = _input_layer([0.75], [0.0])
    x, y = np.ones((1, 1, 1, 1), np.float32), np.array([0])
    assert _spike_times(_one_batch(_norse(), net, x, y, 8)) == [[2, 3, 4, 6, 7, 8]]
    assert _spike_times(_one_batch(_norse(), net, x, y, 8, options={"reset": "subtract"})) == [[2, 3, 4, 6, 7, 8]]
    zero = _one_batch(_norse(), net, x, y, 8, options={"reset": "zero"})
    assert _spike_times(zero) == [[2, 4, 6, 8]]
    assert zero.extra["norse_kernels"] == "off"  # the kernels reset by subtraction: the torch reference runs


def _kernel_form_spike_times(c, b, duration, p=AsnParameters(), reset="subtract"):
    """The ASN as sums of kernels over its past spikes: for a constant
    current c from step 1 on (first layer: no post-synaptic filter), the
    membrane filter gives S(t) = b + c (1 - e^(-t/tau_phi)); S_hat(t) = sum_s
    theta(t_s) e^(-(t - t_s)/tau_eta) (reset to zero: S(t_last)
    e^(-(t - t_last)/tau_eta)); theta(t) = theta0 + sum_s m_f theta(t_s)
    e^(-(t - t_s)/tau_gamma); a spike when S(t) - S_hat(t) > theta(t) / 2."""
    return _spikes_of([b + c * (1 - math.exp(-t / p.tau_phi)) for t in range(1, duration + 1)], p, reset)


def _spikes_of(s_t, p=AsnParameters(), reset="subtract"):
    """The 1-based spike steps of an ASN whose membrane follows ``s_t`` (S at steps 1, 2, ...)."""
    spikes = []  # (t_s, theta(t_s), S(t_s))
    for t, s in enumerate(s_t, start=1):
        theta = p.theta0 + sum(p.mf * th * math.exp(-(t - ts) / p.tau_gamma) for ts, th, _ in spikes)
        if reset == "subtract":
            s_hat = sum(th * math.exp(-(t - ts) / p.tau_eta) for ts, th, _ in spikes)
        else:
            s_hat = spikes[-1][2] * math.exp(-(t - spikes[-1][0]) / p.tau_eta) if spikes else 0.0
        if s - s_hat > theta / 2:
            spikes.append((t, theta, s))
    return [ts for ts, _, _ in spikes]


def test_adaptive_first_spikes_by_hand():
    """m_f = theta0 = 0.1.  Current 0.06, no bias: S(t) = 0.06 (1 -
    e^(-t/2.5)) passes theta/2 = 0.05 when e^(-t/2.5) < 1/6, t > 2.5 ln 6 =
    4.48: step 5.  Then S_hat = 0.1 e^(-k/50), theta = 0.1 + 0.01
    e^(-k/15): the next spike needs 0.06 - 0.1 e^(-k/50) > 0.05 + (a term
    below 2e-8 by then), k > 50 ln 10 = 115.1: k = 116, step 121.  Bias 0.3
    alone: S = 0.3 > 0.05 at step 1.  Current 0.04: S < 0.05 for ever."""
    r = _one_batch(_norse(), _input_layer([0.06, 0.0, 0.04], [0.0, 0.3, 0.0]), np.ones((1, 1, 1, 3), np.float32),
                   np.array([0]), 130, options={"neuron": "adaptive"})
    times = _spike_times(r)
    assert times[0] == [5, 121]
    assert times[1][0] == 1
    assert times[2] == []


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("mf", [0.1, 0.3])
def test_adaptive_neuron_matches_its_kernel_form_on_constant_input(reset, mf):
    currents, biases = [0.06, 0.2, 0.5, 1.0, 0.0], [0.0, 0.0, 0.1, -0.2, 0.3]
    r = _one_batch(_norse(), _input_layer(currents, biases), np.ones((1, 1, 1, 5), np.float32), np.array([0]), 300,
                   options={"neuron": "adaptive", "reset": reset, "mf": mf})
    p = AsnParameters(mf=mf)
    expected = [_kernel_form_spike_times(float(np.float32(c)), float(np.float32(b)), 300, p, reset)  # the float32 weights
                for c, b in zip(currents, biases)]
    assert _spike_times(r) == expected
    assert all(len(times) >= 4 for times in expected[1:])  # they do fire, repeatedly


def test_spikes_reach_the_next_layer_with_the_spike_height():
    """input -> hidden (weight 0.5, a first-layer ASN) -> output (weight 1).
    The output neuron's current is the hidden spikes of height H through the
    post-synaptic kernel, I(t) = H sum_{t_s <= t} e^(-(t - t_s)/tau_beta),
    and its membrane S(t) = sum_k (1 - e^(-1/tau_phi)) e^(-k/tau_phi) I(t - k):
    its spike steps follow from the hidden ones by these sums."""
    spec = ArchitectureSpec(name="chain", dataset="tiny", input_shape=(1, 1, 1), epochs=0, layers=(
        LayerSpec(type="flatten", name="flatten"), LayerSpec(type="dense", name="hidden", units=1),
        LayerSpec(type="dense", name="output", units=1, activation="softmax")))
    w = {"hidden": LayerWeights(np.array([[0.5]], np.float32), np.zeros(1, np.float32)),
         "output": LayerWeights(np.array([[1.0]], np.float32), np.zeros(1, np.float32))}
    net = ConvertedNetwork(spec=spec, weights=w, normalised_weights=w, scale_factors={}, normalisation=NormalisationSettings())
    T, p, h = 400, AsnParameters(), spike_height()
    r = _one_batch(_norse(), net, np.ones((1, 1, 1, 1), np.float32), np.array([0]), T, options={"neuron": "adaptive"})
    hidden = (np.flatnonzero(r.spikes_t["hidden"]) + 1).tolist()
    assert hidden == _kernel_form_spike_times(0.5, 0.0, T) and len(hidden) > 10
    current = [h * sum(math.exp(-(t - ts) / p.tau_beta) for ts in hidden if ts <= t) for t in range(1, T + 1)]
    a = math.exp(-1 / p.tau_phi)
    membrane = [sum((1 - a) * a ** k * current[t - k] for k in range(t + 1)) for t in range(T)]
    want = _spikes_of(membrane, p)
    assert _spike_times(r) == [want] and len(want) > 5


def test_a_conv_bias_is_each_channels_own():
    """A 1x1 conv with zero weights and biases [0.3, 0.0] on a 2x2 image:
    the four neurons of channel 0 are ASNs held at S = 0.3 (the kernel form's
    spike count), those of channel 1 never fire."""
    spec = ArchitectureSpec(name="bias", dataset="tiny", input_shape=(2, 2, 1), epochs=0, layers=(
        LayerSpec(type="conv2d", name="conv", filters=2, kernel=1), LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="output", units=2, activation="softmax")))
    w = {"conv": LayerWeights(np.zeros((1, 1, 1, 2), np.float32), np.array([0.3, 0.0], np.float32)),
         "output": LayerWeights(np.zeros((8, 2), np.float32), np.zeros(2, np.float32))}
    net = ConvertedNetwork(spec=spec, weights=w, normalised_weights=w, scale_factors={}, normalisation=NormalisationSettings())
    r = _one_batch(_norse(), net, np.ones((1, 2, 2, 1), np.float32), np.array([0]), 200, options={"neuron": "adaptive"})
    counts = r.spike_counts["conv"][0]  # (H, W, C)
    n = len(_kernel_form_spike_times(0.0, float(np.float32(0.3)), 200))
    assert n > 5
    np.testing.assert_array_equal(counts[..., 0], np.full((2, 2), n))
    np.testing.assert_array_equal(counts[..., 1], np.zeros((2, 2)))


def test_spike_height_is_the_published_normalisation():
    # Zambrano et al.'s group's code notes h = 0.1244 for m_f = 0.1: the height that maps activation 1 to 1
    assert spike_height(AsnParameters(mf=0.1)) == pytest.approx(0.1244, abs=2e-4)


def _reference_with_adaptive_neurons():
    ref = reference_simulator()
    if "adaptive" not in {c for o in ref.options if o.name == "neuron" for c in (o.choices or ())}:
        pytest.skip("the installed numpy reference has no adaptive neurons (effmodel_numpysim.adaptive)")
    return ref


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("options", [{"neuron": "adaptive"}, {"neuron": "adaptive", "reset": "zero"},
                                     {"neuron": "adaptive", "mf": 0.3}, {"reset": "zero"}])
def test_agrees_with_the_numpy_reference(pooling, options):
    ref_sim = _reference_with_adaptive_neurons()
    net = tiny_network(seed=3, pooling=pooling)
    x, y = tiny_images(net, n=10, seed=4)
    for readout in ("spikes", "potential"):
        got = _one_batch(_norse(), net, x, y, 80, readout=readout, options=options)
        ref = _one_batch(ref_sim, net, x, y, 80, readout=readout, options=options, threads=False)
        assert ref.spikes_t["output"].sum() > 50  # the network does spike, to its output
        for name in ref.spikes_t:
            np.testing.assert_array_equal(got.spikes_t[name], ref.spikes_t[name], err_msg=f"spikes of {name}")
            np.testing.assert_array_equal(got.synops_t[name], ref.synops_t[name], err_msg=f"SynOps of {name}")
        np.testing.assert_array_equal(got.output_spikes_t, ref.output_spikes_t)
        np.testing.assert_array_equal(got.correct_t, ref.correct_t, err_msg=readout)
        np.testing.assert_array_equal(got.predictions, ref.predictions, err_msg=readout)


def test_adaptive_neurons_fire_less_than_if_neurons():
    """The point of the neuron: the same network and images, far fewer spikes."""
    net = tiny_network(seed=3)
    x, y = tiny_images(net, n=4)
    rate = _one_batch(_norse(), net, x, y, 60)
    adaptive = _one_batch(_norse(), net, x, y, 60, options={"neuron": "adaptive"})
    assert 0 < sum(v.sum() for v in adaptive.spikes_t.values()) < sum(v.sum() for v in rate.spikes_t.values()) / 2


@pytest.mark.parametrize("config, message", [
    (SimulationConfig(duration=5, options={"mf": 0.2}), "option mf applies to neuron=adaptive"),
    (SimulationConfig(duration=5, options={"neuron": "adaptive", "mf": 0.0}), "option mf must be positive, got 0.0"),
    (SimulationConfig(duration=5, options={"neuron": "lif", "reset": "zero"}), "option reset applies to neuron=if|adaptive"),
    (SimulationConfig(duration=5, coding="ttfs", options={"neuron": "adaptive"}), "option neuron=adaptive applies to rate"),
    (SimulationConfig(duration=5, coding="ttfs", options={"reset": "subtract"}), "option reset=subtract applies to rate"),
    (SimulationConfig(duration=5, options={"neuron": "adaptive", "kernels": "on"}), "kernels=on needs"),
    (SimulationConfig(duration=5, options={"reset": "zero", "kernels": "on"}), "kernels=on needs"),
])
def test_option_combinations_are_refused_in_one_line(config, message):
    with pytest.raises(UsageError, match=message.replace("|", r"\|")) as err:
        _norse().open(tiny_network(seed=3), config)
    assert "\n" not in str(err.value)


def test_ttfs_accepts_the_options_that_describe_it():
    session = _norse().open(tiny_network(seed=3), SimulationConfig(duration=5, coding="ttfs",
                                                                   options={"neuron": "if", "reset": "zero"}))
    session.close()
