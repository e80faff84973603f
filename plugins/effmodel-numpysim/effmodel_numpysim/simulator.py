"""The ``numpy`` reference simulator: a converted network in plain numpy.

Written to be read: it is the walkthrough for simulator authors
(``CONTRIBUTING.md``) and the reference that ``effmodel.testing.check_simulator``
compares other simulators with.  It uses only effmodel's public API.

- Neurons: integrate-and-fire, threshold 1, spike when ``v >= 1``, reset by
  subtraction (``v -= 1``), no leak: the rule of snntoolbox's INI simulator.
  ``--option reset=zero``: reset to zero instead (``v = 0``).
  ``--option neuron=adaptive``: the adaptive spiking neurons of Zambrano et
  al. 2019 (:mod:`.adaptive`).
- Weights: ``network.normalised_weights`` on ``network.simulated_spec`` (so
  ``--max2avg-pool`` is honoured), in float32 like INIsim and Norse.
- Input: analog (the first layer receives ``W x + b`` at every step, no
  SynOps) or Poisson (pixel ``p`` spikes with probability ``p``; counted as
  the layer ``"input"``).
- Max pooling: each window passes on the spikes of its input neuron with the
  most spikes so far (ties: the first in row-major order).
- SynOps: spikes per neuron x exact fan-out (``fanout_map``), per layer and step.
- Readout: ``config.readout`` (``spikes``: most output spikes, lowest index,
  -1 before the first output spike; ``potential``: ties by membrane potential).
- Codes: this module is rate coding; ``--coding ttfs`` (time to first spike)
  is :mod:`.ttfs`.
"""

from __future__ import annotations

import numpy as np

from effmodel import BatchResult, UsageError, conv2d, fanout_map, pool2d, same_padding, spiking_layer_indices
from effmodel.options import CORE_OPTIONS, SimulatorOption
from effmodel.simulation import INPUT_ENCODINGS, READOUTS

# The --option keys it takes, as SimulatorOption(name, type, default, choices, doc) (effmodel.options);
# the core refuses any other key, or a bad value, before training.
OPTIONS = (
    SimulatorOption("reset", str, "subtract", ("subtract", "zero"), "rate coding: after a spike, v -= 1 or v = 0"),
    SimulatorOption("neuron", str, "if", ("if", "adaptive"), "rate coding: IF, or adaptive (Zambrano et al. 2019)"),
    SimulatorOption("mf", float, 0.1, doc="neuron=adaptive: speed of adaptation m_f, also the resting threshold"),
    *CORE_OPTIONS,  # keep_workdir, handled by the core
)


class NumpySimulator:
    name = "numpy"
    description = "reference: IF neurons (rate, or firing once: ttfs) or adaptive neurons, plain numpy (slow, readable)"
    options = OPTIONS
    readouts = READOUTS  # the readout rules it honours (a subset, if not all)
    input_encodings = INPUT_ENCODINGS  # analog and Poisson input (a subset, if not all)
    codings = ("rate", "ttfs")  # the neural codes it implements: rate (below) and ttfs (.ttfs)

    def check_config(self, config):
        """Refuse, before any training, neuron options that mean nothing together (see .adaptive)."""
        from .adaptive import check_neuron_options

        check_neuron_options(config)

    def open(self, network, config):
        unknown = sorted(set(config.options) - {o.name for o in OPTIONS})
        if unknown:
            raise UsageError(f"the numpy simulator takes no option {', '.join(unknown)}")
        self.check_config(config)  # combinations of neuron, reset, mf (the core checked them before training)
        from .adaptive import adaptive_session

        if config.coding == "ttfs":
            from .ttfs import TtfsSession  # time to first spike: each neuron fires at most once

            return TtfsSession(network, config)
        if config.options.get("neuron") == "adaptive":
            return adaptive_session(network, config)  # Zambrano et al.'s adaptive spiking neurons
        return NumpySession(network, config)


class NumpySession:
    def __init__(self, network, config):
        self.spec = network.simulated_spec  # never network.spec: honours --max2avg-pool
        self.weights = network.normalised_weights  # threshold-1 weights
        self.config = config
        self.spiking = spiking_layer_indices(self.spec)
        self.fanout = {i: fanout_map(self.spec, i).reshape(-1) for i in [-1, *self.spiking]}
        self.rng = np.random.default_rng(config.seed)
        self.reset_to_zero = config.options.get("reset") == "zero"

    def run_batch(self, x, y):
        spec, cfg, T, n = self.spec, self.config, self.config.duration, len(x)
        x = np.asarray(x, dtype=np.float32)
        names = {i: spec.layers[i].name for i in self.spiking}
        v = {i: None for i in self.spiking}  # membrane potentials, created at the first step
        counts = {i: None for i in self.spiking}  # spikes per neuron so far
        in_counts = {}  # max pooling: spikes so far of each pooling input
        spikes_t = {name: np.zeros(T, np.int64) for name in names.values()}
        synops_t = {name: np.zeros(T, np.int64) for name in names.values()}
        if cfg.input_encoding == "poisson":
            spikes_t["input"], synops_t["input"] = np.zeros(T, np.int64), np.zeros(T, np.int64)
        analog, first, first_current = cfg.input_encoding == "analog", self.spiking[0], None
        correct = np.zeros(T, np.int64)
        out = self.spiking[-1]
        output_spikes = np.zeros((n, T, spec.layers[out].units), np.int8)  # per image, step and class
        for t in range(T):
            h = x
            if cfg.input_encoding == "poisson":
                h = (self.rng.random(x.shape) < x).astype(np.float32)
                self.count("input", -1, h, t, spikes_t, synops_t)
            for i, layer in enumerate(spec.layers):
                if layer.type == "flatten":
                    h = h.reshape(n, -1)  # channels-last order, as Keras
                if i not in v:
                    continue  # flatten, dropout: no neurons
                if layer.type == "maxpool":
                    in_counts[i] = h if t == 0 else in_counts[i] + h
                    h = self.max_pool_gate(layer, in_counts[i], h)
                else:
                    current = first_current if first_current is not None and i == first else self.current(i, h)
                    if analog and i == first:
                        first_current = current  # analog input: the same current at every step
                    v[i] = current.copy() if v[i] is None else v[i] + current
                    h = (v[i] >= 1.0).astype(np.float32)  # spike at threshold 1 ...
                    if self.reset_to_zero:
                        v[i] = np.where(h > 0, np.float32(0), v[i])  # ... and reset to zero (--option reset=zero)
                    else:
                        v[i] -= h  # ... and reset by subtraction
                counts[i] = h if counts[i] is None else counts[i] + h
                self.count(names[i], i, h, t, spikes_t, synops_t)
                if i == out:
                    output_spikes[:, t] = h
            guess = self.readout(counts[self.spiking[-1]], v[self.spiking[-1]])
            correct[t] = int(np.sum(guess == np.asarray(y)))
        spike_counts = {names[i]: counts[i].astype(np.int64) for i in self.spiking} if cfg.record_spiketrains else None
        return BatchResult(correct_t=correct, synops_t=synops_t, spikes_t=spikes_t, predictions=guess,
                           spike_counts=spike_counts, output_spikes_t=output_spikes)

    def current(self, i, h):
        """Input current ``W h + b`` of spiking layer ``i`` (conv, dense or average pooling)."""
        layer = self.spec.layers[i]
        if layer.type == "avgpool":
            return pool2d(h, layer)
        w = self.weights[layer.name]
        if layer.type == "conv2d":
            return conv2d(h, w.kernel, w.bias, layer)
        return (h @ w.kernel + (0 if w.bias is None else w.bias)).astype(np.float32)

    def max_pool_gate(self, layer, counts, spikes):
        """Per window, the spikes of the tap with the most spikes so far."""
        win_counts = pool_windows(counts, layer, pad_value=-1.0)  # padding never wins
        win_spikes = pool_windows(spikes, layer, pad_value=0.0)
        best = np.argmax(win_counts, axis=-1)[..., None]  # first maximum = row-major tie rule
        return np.take_along_axis(win_spikes, best, axis=-1)[..., 0]

    def count(self, name, i, s, t, spikes_t, synops_t):
        """Spikes and exact SynOps of one layer at step ``t``, summed over the batch."""
        per_neuron = s.reshape(len(s), -1).sum(axis=0).astype(np.int64)
        spikes_t[name][t] = per_neuron.sum()
        synops_t[name][t] = per_neuron @ self.fanout[i]

    def readout(self, out_counts, v_out):
        best = out_counts.max(axis=1, keepdims=True)
        if self.config.readout == "potential":
            return np.argmax(np.where(out_counts == best, v_out, -np.inf), axis=1)
        return np.where(best[:, 0] > 0, np.argmax(out_counts, axis=1), -1)

    def close(self):
        pass


def pool_windows(x, layer, pad_value):
    """``(B, OH, OW, C, k*k)`` windows of a pooling layer (Keras 'same' padding)."""
    k, s = layer.pool, layer.pool_stride
    if layer.padding == "same":
        pads = ((0, 0), same_padding(x.shape[1], k, s), same_padding(x.shape[2], k, s), (0, 0))
        x = np.pad(x, pads, constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]
    return win.reshape(*win.shape[:4], k * k)
