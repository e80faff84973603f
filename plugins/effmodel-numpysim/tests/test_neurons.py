"""The numpy simulator's neuron options (rate coding): ``--option reset=zero``
on hand-worked IF networks; ``--option neuron=adaptive`` (Zambrano et al.'s
adaptive spiking neuron) against its closed form on constant input and
against the paper's transfer function (the conversion rule); the options'
one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from effmodel import (ArchitectureSpec, ConvertedNetwork, LayerSpec, LayerWeights, NormalisationSettings,
                      SimulationConfig, UsageError)
from effmodel.options import check_options
from effmodel.testing import check_simulator, tiny_images, tiny_network
from effmodel_numpysim.adaptive import AsnParameters, spike_height, transfer
from effmodel_numpysim.simulator import NumpySimulator


def network(spec, weights):
    return ConvertedNetwork(spec=spec, weights=weights, normalised_weights=weights,
                            scale_factors={k: 1.0 for k in weights}, normalisation=NormalisationSettings())


def run(net, x, y, **config):
    session = NumpySimulator().open(net, SimulationConfig(**config))
    try:
        return session.run_batch(np.asarray(x, np.float32), np.asarray(y))
    finally:
        session.close()


def hidden_chain(currents):
    """input (1,1,k) of ones -> hidden dense(k), neuron j gets ``currents[j]`` per step -> output dense(k)
    copying the hidden spikes (weight 1)."""
    k = len(currents)
    spec = ArchitectureSpec(name="chain", dataset="tiny", input_shape=(1, 1, k), layers=(
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="hidden", units=k),
        LayerSpec(type="dense", name="output", units=k, activation="softmax"),
    ))
    w = {"hidden": LayerWeights(np.diag(currents).astype(np.float32), np.zeros(k, np.float32)),
         "output": LayerWeights(np.eye(k, dtype=np.float32), np.zeros(k, np.float32))}
    return network(spec, w)


# --- reset to zero vs reset by subtraction (IF neurons) ----------------------------


def test_reset_to_zero_vs_subtraction_by_hand():
    # hidden 0 integrates 3/8 per step, hidden 1 5/8 (exact in float32).
    # subtract: h0 0.375 0.75 1.125* 0.5 0.875 1.25* 0.625 1.0*    -> spikes at 3, 6, 8
    #           h1 0.625 1.25* 0.875 1.5* 1.125* 0.75 1.375* 1.0*  -> spikes at 2, 4, 5, 7, 8
    # zero:     h0 0.375 0.75 1.125* 0.375 0.75 1.125* 0.375 0.75 -> spikes at 3, 6
    #           h1 0.625 1.25* 0.625 1.25* 0.625 1.25* 0.625 1.25* -> spikes at 2, 4, 6, 8
    # The output neurons get exactly 1 per hidden spike and fire at once, either way.
    net, x = hidden_chain([0.375, 0.625]), np.ones((1, 1, 1, 2))
    sub = run(net, x, [0], duration=8, record_spiketrains=True)
    zero = run(net, x, [0], duration=8, record_spiketrains=True, options={"reset": "zero"})
    assert sub.spikes_t["hidden"].tolist() == [0, 1, 1, 1, 1, 1, 1, 2]
    assert zero.spikes_t["hidden"].tolist() == [0, 1, 1, 1, 0, 2, 0, 1]
    assert sub.spike_counts["hidden"].tolist() == [[3, 5]] and zero.spike_counts["hidden"].tolist() == [[2, 4]]
    assert zero.spikes_t["output"].tolist() == zero.spikes_t["hidden"].tolist()
    assert zero.synops_t["hidden"].tolist() == [0, 2, 2, 2, 0, 4, 0, 2]  # fan-out 2 (both outputs)
    # the default is reset by subtraction, unchanged
    assert run(net, x, [0], duration=8, options={"reset": "subtract"}).spikes_t["hidden"].tolist() == \
        sub.spikes_t["hidden"].tolist()


# --- the adaptive spiking neuron (neuron=adaptive) ---------------------------------


def input_layer(currents, biases):
    """input (1,1,k) of ones -> output dense(k): neuron j is an input-layer ASN with the constant
    current ``currents[j]`` (no post-synaptic filter) and bias ``biases[j]``."""
    k = len(currents)
    spec = ArchitectureSpec(name="asn", dataset="tiny", input_shape=(1, 1, k), layers=(
        LayerSpec(type="flatten", name="flatten"),
        LayerSpec(type="dense", name="output", units=k, activation="softmax"),
    ))
    w = {"output": LayerWeights(np.diag(currents).astype(np.float32), np.asarray(biases, np.float32))}
    return network(spec, w)


def asn_spike_times(c, b, duration, p=AsnParameters(), reset="subtract"):
    """The paper's neuron written as sums of kernels over its past spikes (not the simulator's
    recursive filters): for a constant current c switched on at step 1, the membrane filter gives
    S(t) = b + c (1 - e^(-t/tau_phi)); S_hat(t) = sum_s theta(t_s) e^(-(t - t_s)/tau_eta) (reset zero:
    S(t_last) e^(-(t - t_last)/tau_eta)); theta(t) = theta0 + sum_s m_f theta(t_s) e^(-(t - t_s)/tau_gamma);
    a spike at t when S(t) - S_hat(t) > theta(t) / 2."""
    spikes = []  # (t_s, theta(t_s), S(t_s))
    for t in range(1, duration + 1):
        s = b + c * (1 - math.exp(-t / p.tau_phi))
        theta = p.theta0 + sum(p.mf * th * math.exp(-(t - ts) / p.tau_gamma) for ts, th, _ in spikes)
        if reset == "subtract":
            s_hat = sum(th * math.exp(-(t - ts) / p.tau_eta) for ts, th, _ in spikes)
        else:
            s_hat = spikes[-1][2] * math.exp(-(t - spikes[-1][0]) / p.tau_eta) if spikes else 0.0
        if s - s_hat > theta / 2:
            spikes.append((t, theta, s))
    return [ts for ts, _, _ in spikes]


def spike_times(result, duration):
    """Per output neuron, the 1-based steps at which it spiked (one image)."""
    spikes = np.asarray(result.output_spikes_t)[0]  # (T, K)
    return [(np.flatnonzero(spikes[:, j]) + 1).tolist() for j in range(spikes.shape[1])]


def test_adaptive_neuron_first_spikes_on_constant_input_by_hand():
    # m_f = theta0 = 0.1: a spike needs S - S_hat > theta / 2 = 0.05 before the first spike.
    # current 0.06, no bias: S(t) = 0.06 (1 - e^(-t/2.5)) > 0.05 <=> e^(-t/2.5) < 1/6
    #   <=> t > 2.5 ln 6 = 4.48: the first spike at step 5 (S = 0.0518).
    # After it S_hat = 0.1 e^(-k/50) and theta = 0.1 + 0.01 e^(-k/15), k steps later; S = 0.06 by then,
    #   so the next spike needs 0.06 - 0.1 e^(-k/50) > 0.05 + 0.005 e^(-k/15): with e^(-k/15) < 3e-6
    #   k > 50 ln(0.1 / 0.01) = 115.13, i.e. k = 116: the second spike at step 121.
    # bias 0.3 and no current: S = 0.3 from step 1 on (0.3 > 0.05: a spike at step 1).
    # current 0.04: S < 0.04 < 0.05 for ever: silent.
    r = run(input_layer([0.06, 0.0, 0.04], [0.0, 0.3, 0.0]), np.ones((1, 1, 1, 3)), [0], duration=130,
            options={"neuron": "adaptive"})
    times = spike_times(r, 130)
    assert times[0] == [5, 121]
    assert times[1][0] == 1
    assert times[2] == []


def test_adaptive_potential_readout_by_hand():
    # currents 0.03 and 0.04: S_j(t) = c_j (1 - e^(-t/2.5)) stays below theta0 / 2 = 0.05, so neither ever fires.
    # spikes readout: no class at any step; potential readout: the larger S - S_hat, neuron 1 (S_1 > S_0 > 0).
    net, x = input_layer([0.03, 0.04], [0.0, 0.0]), np.ones((1, 1, 1, 2))
    spikes = run(net, x, [1], duration=5, options={"neuron": "adaptive"})
    potential = run(net, x, [1], duration=5, readout="potential", options={"neuron": "adaptive"})
    assert spikes.correct_t.tolist() == [0] * 5 and spikes.predictions.tolist() == [-1]
    assert potential.correct_t.tolist() == [1] * 5 and potential.predictions.tolist() == [1]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("mf", [0.1, 0.3])
def test_adaptive_neuron_matches_its_kernel_form_on_constant_input(reset, mf):
    currents, biases = [0.06, 0.2, 0.5, 1.0, 0.0], [0.0, 0.0, 0.1, -0.2, 0.3]
    r = run(input_layer(currents, biases), np.ones((1, 1, 1, 5)), [0], duration=300,
            options={"neuron": "adaptive", "reset": reset, "mf": mf})
    p = AsnParameters(mf=mf)
    # float32 weights: the currents the layer really gets
    expected = [asn_spike_times(float(np.float32(c)), float(np.float32(b)), 300, p, reset)
                for c, b in zip(currents, biases)]
    assert spike_times(r, 300) == expected
    assert all(len(times) >= 4 for times in expected[1:])  # they do fire, repeatedly


def test_spike_height_is_the_published_normalisation():
    # the authors' code notes h = 0.1244 for m_f = 0.1 (the spike height that maps activation 1 to 1)
    assert spike_height(AsnParameters(mf=0.1)) == pytest.approx(0.1244, abs=2e-4)
    assert float(transfer(0.04)) == 0.0  # below theta0 / 2 = 0.05: no spikes


@pytest.mark.parametrize("activation", [0.1, 0.2, 0.5, 1.0])
def test_conversion_rule_a_neuron_passes_its_activation_on(activation):
    # The conversion rule: an ASN held at a constant activation a (here an input-layer neuron with current a)
    # emits spikes of height H; their post-synaptic current in the next layer averages
    # H x spikes per step x sum_k e^(-k/50) = H x rate / (1 - e^(-1/50)).  The paper's transfer function
    # predicts H x transfer(a) (derived in continuous time; in steps of 1 ms within 10 %); on [0.05, 1]
    # that lies within 0.07 above a (0.124 at 0.1, 0.243 at 0.2, 0.564 at 0.5, 1 at 1), so the ReLU it
    # replaces is passed on within 25 % (or 0.07).
    def mean_current(spikes):
        return spike_height() * spikes.mean() / (1 - math.exp(-1 / 50))

    r = run(hidden_chain([activation]), np.ones((1, 1, 1, 1)), [0], duration=3000, options={"neuron": "adaptive"})
    hidden = mean_current(r.spikes_t["hidden"][1000:])  # after the first second: the steady state
    assert hidden == pytest.approx(spike_height() * float(transfer(activation)), rel=0.10)
    assert hidden == pytest.approx(activation, rel=0.25, abs=0.07)
    # the output neuron, fed by those spikes (weight 1), passes the signal on again, within the same bounds
    # (its input is a train of decaying pulses, not the constant the transfer function assumes)
    output = mean_current(r.spikes_t["output"][1000:])
    assert output == pytest.approx(hidden, rel=0.25, abs=0.07)


def test_adaptive_neurons_fire_less_than_if_neurons():
    # the point of the neuron: the same network and images, far fewer spikes
    net = tiny_network(seed=3)
    x, y = tiny_images(net, n=4)
    rate = run(net, x, y, duration=60)
    adaptive = run(net, x, y, duration=60, options={"neuron": "adaptive"})
    assert 0 < sum(v.sum() for v in adaptive.spikes_t.values()) < sum(v.sum() for v in rate.spikes_t.values()) / 2


def test_adaptive_neurons_pass_the_contract_checks():
    result = check_simulator(NumpySimulator(), compare=False, options={"neuron": "adaptive"})
    assert set(result.cases) >= {"max pooling", "average pooling", "poisson input"}


# --- option errors: one line, naming the option --------------------------------------


@pytest.mark.parametrize("options, message", [
    ({"neuron": "lif"}, "option neuron must be one of if, adaptive, got 'lif'"),
    ({"reset": "none"}, "option reset must be one of subtract, zero, got 'none'"),
    ({"mf": "fast"}, "option mf expects float, got 'fast'"),
    ({"neurons": "if"}, "has no option 'neurons'.*did you mean 'neuron'"),
])
def test_bad_option_values_are_refused_before_any_work(options, message):
    with pytest.raises(UsageError, match=message):
        check_options(NumpySimulator(), options)


@pytest.mark.parametrize("config, message", [
    ({"coding": "ttfs", "options": {"neuron": "adaptive"}}, "ttfs neurons .* option neuron=adaptive applies to rate"),
    ({"coding": "ttfs", "options": {"reset": "subtract"}}, "option reset=subtract applies to rate coding"),
    ({"options": {"mf": 0.2}}, "option mf applies to neuron=adaptive"),
    ({"options": {"neuron": "adaptive", "mf": 0.0}}, "option mf must be positive, got 0.0"),
])
def test_option_combinations_are_one_line(config, message):
    with pytest.raises(UsageError, match=message) as err:
        NumpySimulator().open(hidden_chain([0.5]), SimulationConfig(duration=2, **config))
    assert "\n" not in str(err.value)


def test_ttfs_accepts_the_options_that_describe_it():
    r = run(hidden_chain([0.5]), np.ones((1, 1, 1, 1)), [0], duration=4, coding="ttfs",
            options={"neuron": "if", "reset": "zero"})
    assert r.spikes_t["hidden"].tolist() == [0, 1, 0, 0]  # 0.5, 1.0: fires once at step 2
