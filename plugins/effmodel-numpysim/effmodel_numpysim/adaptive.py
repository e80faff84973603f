"""Adaptive spiking neurons (``--option neuron=adaptive``) in plain numpy.

The adaptive spiking neuron (ASN) of Zambrano, Nusselder, Scholte & Bohte,
"Sparse Computation in Adaptive Spiking Neural Networks" (Front. Neurosci.
12:987, 2019; earlier: Zambrano & Bohte, arXiv:1609.02053, 2016), the
report's reference [4].  A rate code like the IF neuron's, but each neuron
fires only as often as it needs to track its input (sigma-delta coding):

- Membrane: the input current ``I`` (spikes of height ``H`` through a
  post-synaptic current decaying with ``tau_beta``) is low-pass filtered with
  ``tau_phi``: ``S(t) = b + (phi * I)(t)``.  The first spiking layer takes
  its current directly (``W x``, no post-synaptic filter), as the paper's
  input layer; the bias ``b`` is the constant part of ``S``.
- Spikes: the neuron keeps an internal approximation of its own output,
  ``S_hat(t) = sum_s theta(t_s) exp(-(t - t_s)/tau_eta)``, and fires when
  ``S(t) - S_hat(t) > theta(t) / 2``.
- Adaptive threshold, multiplicative: ``theta(t) = theta0 + sum_s m_f
  theta(t_s) exp(-(t - t_s)/tau_gamma)``, with ``theta0 = m_f``.
- Reset (``--option reset``): ``subtract`` (the paper's: a spike adds
  ``theta(t_s)`` to ``S_hat``, i.e. takes it off ``S - S_hat``) or ``zero``
  (``S_hat`` jumps to ``S``: the effective potential ``S - S_hat`` is 0).
- Time constants (one step = 1 ms): ``tau_phi`` 2.5, ``tau_gamma`` 15,
  ``tau_eta = tau_beta`` 50; ``m_f`` 0.1 (``--option mf``).

Conversion rule.  The paper derives the ASN's transfer function
(:func:`transfer`: a neuron's mean post-synaptic contribution for a constant
activation ``S``) and scales the spike height ``H`` so that ``S = 1`` gives
1 (:func:`spike_height`).  With ``m_f = 0.1`` the scaled transfer is 0 below
``theta0/2 = 0.05`` and lies within 0.07 above the identity on ``[0.05, 1]``
(0.124 at 0.1, 0.243 at 0.2, 0.564 at 0.5, 1 at 1), so ReLU units of an ANN
whose activations are normalised to at most 1 (``network.normalised_weights``)
are replaced by ASNs directly, as the 2016 preprint does.  The 2019 paper
trains the ANN with this transfer function instead of ReLU; effmodel trains
ReLU networks, so that difference is part of the conversion error measured
here.  The full text's equations were not available to us; the model and
the transfer function follow the paper's abstract and methods (kernels and
time constants, as summarised in its preprint) and the ASN code of the
authors' group, ``lynnsoerensen/SpatialAttention_sDCNN_2020``
(``asn/layers/test.py``, ``asn/conversion/utils.py``: ``transfer_avgPSP``,
``normalize_transfer``), which cites Zambrano et al.; the formula is
re-implemented here, not copied.

effmodel differences: the output layer spikes too (the paper reads its
``S``), so that the core's spike readout applies (``potential``: ties by
``S - S_hat``); max pooling is the reference's gate on the spikes so far.
SynOps: spikes x exact fan-out, as for IF neurons (the post-synaptic
current's decay is a per-neuron update, not a synaptic event).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from effmodel import BatchResult, UsageError, conv2d, pool2d

from .simulator import NumpySession


@dataclass(frozen=True)
class AsnParameters:
    """The ASN's constants; times in simulation steps (1 ms each)."""

    mf: float = 0.1  # speed of adaptation, also the resting threshold theta0
    tau_phi: float = 2.5  # membrane filter
    tau_gamma: float = 15.0  # threshold adaptation
    tau_eta: float = 50.0  # refractory response S_hat, and the post-synaptic current (tau_beta)

    @property
    def theta0(self) -> float:
        return self.mf

    @property
    def tau_beta(self) -> float:
        return self.tau_eta


def transfer(s, p: AsnParameters = AsnParameters()):
    """The ASN transfer function for spikes of height 1: the mean post-synaptic
    contribution of a neuron held at activation ``s`` (0 below ``theta0 / 2``)."""
    s = np.asarray(s, dtype=np.float64)
    g, e, th = p.tau_gamma, p.tau_eta, p.theta0
    c1 = 2 * p.mf * g * g
    c2 = 2 * th * e * g
    c3 = g * (p.mf * g + 2 * (p.mf + 1) * e)
    c4 = th * e * (g + e)

    def psp(x):
        return 1.0 / np.expm1((c1 * x + c2) / (c3 * x + c4))

    below = s < th / 2
    return np.where(below, 0.0, psp(np.where(below, th / 2, s)) - psp(th / 2) + 0.5)


def spike_height(p: AsnParameters = AsnParameters()) -> float:
    """The spike height ``H`` that makes the transfer map activation 1 to 1 (the conversion rule)."""
    return float(1.0 / transfer(1.0, p))


def check_neuron_options(config) -> None:
    """Refuse, in one line, neuron options that mean nothing together: under ``--coding ttfs`` the
    neurons are IF neurons that fire once and reset to zero; ``mf`` belongs to adaptive neurons."""
    options = config.options
    if config.coding == "ttfs":
        rate_only = [f"{k}={options[k]}" for k in ("neuron", "reset", "mf")
                     if k in options and (k, options[k]) not in {("neuron", "if"), ("reset", "zero")}]
        if rate_only:
            raise UsageError(f"the numpy simulator's --coding ttfs neurons are IF neurons that fire once and "
                             f"reset to zero: option {', '.join(rate_only)} applies to rate coding")
    elif "mf" in options and options.get("neuron") != "adaptive":
        raise UsageError("the numpy simulator's option mf applies to neuron=adaptive")
    if "mf" in options and not options["mf"] > 0:
        raise UsageError(f"the numpy simulator's option mf must be positive, got {options['mf']!r}")


def adaptive_session(network, config) -> "AdaptiveSession":
    """The session of ``--option neuron=adaptive`` (rate coding), with ``mf`` and ``reset`` from the options."""
    params = AsnParameters(mf=float(config.options.get("mf", AsnParameters.mf)))
    return AdaptiveSession(network, config, params, config.options.get("reset", "subtract"))


class AdaptiveSession(NumpySession):
    """One rate-coded simulation with adaptive spiking neurons (``--option neuron=adaptive``)."""

    def __init__(self, network, config, params: AsnParameters, reset: str):
        super().__init__(network, config)
        self.p, self.reset = params, reset
        self.height = spike_height(params)
        self.d_phi, self.d_gamma, self.d_eta = (math.exp(-1.0 / t) for t in (params.tau_phi, params.tau_gamma, params.tau_eta))
        self.d_beta = math.exp(-1.0 / params.tau_beta)

    def run_batch(self, x, y):
        spec, cfg, T, n = self.spec, self.config, self.config.duration, len(x)
        x = np.asarray(x, dtype=np.float32)
        names = {i: spec.layers[i].name for i in self.spiking}
        state = {}  # spiking (non-max-pool) layer -> its neurons' state, created at the first step
        counts = {i: None for i in self.spiking}  # spikes per neuron so far
        in_counts = {}  # max pooling: spikes so far of each pooling input
        spikes_t = {name: np.zeros(T, np.int64) for name in names.values()}
        synops_t = {name: np.zeros(T, np.int64) for name in names.values()}
        poisson, first, out = cfg.input_encoding == "poisson", self.spiking[0], self.spiking[-1]
        if poisson:
            spikes_t["input"], synops_t["input"] = np.zeros(T, np.int64), np.zeros(T, np.int64)
        first_current = None
        correct = np.zeros(T, np.int64)
        output_spikes = np.zeros((n, T, spec.layers[out].units), np.int8)
        for t in range(T):
            h = x
            if poisson:
                h = (self.rng.random(x.shape) < x).astype(np.float32)
                self.count("input", -1, h, t, spikes_t, synops_t)
            for i, layer in enumerate(spec.layers):
                if layer.type == "flatten":
                    h = h.reshape(n, -1)
                if i not in counts:
                    continue
                if layer.type == "maxpool":
                    in_counts[i] = h if t == 0 else in_counts[i] + h
                    h = self.max_pool_gate(layer, in_counts[i], h)
                else:
                    if i == first:  # the input layer takes its current directly (analog: the same at every step)
                        current = first_current if first_current is not None and not poisson else self.synaptic(i, h)
                        first_current = current
                    else:
                        current = self.synaptic(i, h * self.height)  # spikes of height H
                    if i not in state:
                        state[i] = self.initial_state(i, current)
                    h = self.step(state[i], current, direct=i == first)
                counts[i] = h if counts[i] is None else counts[i] + h
                self.count(names[i], i, h, t, spikes_t, synops_t)
                if i == out:
                    output_spikes[:, t] = h
            guess = self.readout(counts[out], state[out]["S"] - state[out]["S_hat"])
            correct[t] = int(np.sum(guess == np.asarray(y)))
        spike_counts = {names[i]: counts[i].astype(np.int64) for i in self.spiking} if cfg.record_spiketrains else None
        return BatchResult(correct_t=correct, synops_t=synops_t, spikes_t=spikes_t, predictions=guess,
                           spike_counts=spike_counts, output_spikes_t=output_spikes)

    def synaptic(self, i, h):
        """``W h`` of spiking layer ``i`` without its bias (the bias is the constant part of ``S``)."""
        layer = self.spec.layers[i]
        if layer.type == "avgpool":
            return pool2d(h, layer)
        w = self.weights[layer.name]
        if layer.type == "conv2d":
            return conv2d(h, w.kernel, None, layer)
        return (h @ w.kernel).astype(np.float32)

    def initial_state(self, i, current):
        layer = self.spec.layers[i]
        bias = self.weights[layer.name].bias if layer.name in self.weights else None
        zeros = np.zeros(current.shape, np.float64)
        return {"I": zeros.copy(), "S_dyn": zeros.copy(), "S": zeros.copy(), "S_hat": zeros.copy(),
                "theta_dyn": zeros.copy(), "theta": np.full(current.shape, self.p.theta0),
                "bias": np.zeros(current.shape[-1]) if bias is None else np.asarray(bias, np.float64)}

    def step(self, s, current, direct):
        """One step of a layer of ASNs (in place); returns its spikes as float32 0/1."""
        s["I"] = current.astype(np.float64) if direct else self.d_beta * s["I"] + current  # post-synaptic current
        s["S_dyn"] = (1 - self.d_phi) * s["I"] + self.d_phi * s["S_dyn"]  # membrane filter
        s["S"] = s["bias"] + s["S_dyn"]
        s["S_hat"] *= self.d_eta
        spike = s["S"] - s["S_hat"] > s["theta"] / 2
        if self.reset == "zero":
            s["S_hat"] = np.where(spike, s["S"], s["S_hat"])
        else:
            s["S_hat"] += s["theta"] * spike
        s["theta_dyn"] = (s["theta_dyn"] + self.p.mf * s["theta"] * spike) * self.d_gamma
        s["theta"] = self.p.theta0 + s["theta_dyn"]
        return spike.astype(np.float32)
