"""Time-to-first-spike coding (``--coding ttfs``) in plain numpy.

After Rueckauer & Liu 2018, "Conversion of analog to spiking neural networks
using sparse temporal coding" (ISCAS), as snntoolbox implements it in its
``ttfs`` INI backend (``snntoolbox/simulation/backends/inisim/ttfs.py``):

- Every neuron (hidden and output) fires **at most once**: when its membrane
  ``v`` reaches threshold 1 it spikes, ``v`` is reset to 0 and it integrates
  nothing more (snntoolbox: a refractory period as long as the run).
- A spike is a persistent step of current: from the step a neuron fires on,
  its targets receive its weight at every step (snntoolbox's post-synaptic
  potential ``dt`` wherever ``last_spiketimes > 0``).  So a layer's current at
  step ``t`` is ``W h_t + b`` with ``h_t`` the 0/1 map of its inputs that have
  fired by ``t``, and a neuron with a larger ANN activation fires earlier.
- A layer receives no current (not even its bias) for an image while none of
  its inputs has fired for that image (snntoolbox's ``spike_call``, which
  decides this for the whole batch; here per image, so that results do not
  depend on the batch size).
- Input: analog (``W x + b`` at every step, no SynOps) or Poisson (pixels
  spike as under rate coding, counted as the layer ``input``; the input is
  not a TTFS layer, as in snntoolbox).
- Max pooling: a pooling neuron fires once, at the first step any input of
  its window has fired (the earliest spike is the largest activation).
- SynOps: each spike once, times its neuron's exact fan-out
  (``effmodel.fanout_map``, borders and padding included).  The persistent
  current costs no further SynOps: the synapse turns on once.
- Readout, a decision-time code: the class is the output neuron that fired
  first, from its spike on; several at that same step: the lowest index
  (``spikes``) or the highest membrane potential at that step before the
  reset (``potential``).  Before any output spike: no class (``spikes``) or
  the highest membrane potential (``potential``).  A decision never changes,
  so the error can only fall as images decide.
- Extra figures (summed over batches): ``decisions_t`` (images deciding at
  each step), ``synops_to_decision`` (each decided image's SynOps up to and
  including its own decision step, summed: the cost of a system that stops
  an image once it has decided) and ``undecided_images``.
"""

from __future__ import annotations

import numpy as np

from effmodel import BatchResult

from .simulator import NumpySession, pool_windows


class TtfsSession(NumpySession):
    """One TTFS simulation of a converted network (the session of ``--coding ttfs``)."""

    def run_batch(self, x, y):
        spec, cfg, T, n = self.spec, self.config, self.config.duration, len(x)
        x = np.asarray(x, dtype=np.float32)
        names = {i: spec.layers[i].name for i in self.spiking}
        fired = {i: None for i in self.spiking}  # per neuron: has it fired yet (its persistent output)
        v = {i: None for i in self.spiking}  # membrane potentials
        spikes_t = {name: np.zeros(T, np.int64) for name in names.values()}
        synops_t = {name: np.zeros(T, np.int64) for name in names.values()}
        poisson = cfg.input_encoding == "poisson"
        if poisson:
            spikes_t["input"], synops_t["input"] = np.zeros(T, np.int64), np.zeros(T, np.int64)
        out = self.spiking[-1]
        first_out = np.full((n, spec.layers[out].units), T + 1)  # 1-based step of each output spike, T+1: none
        v_fire = np.zeros(first_out.shape, np.float32)  # output potential at its firing step, before the reset
        decided_at = np.zeros(n, np.int64)  # 1-based decision step, 0: undecided
        synops_image = np.zeros(n, np.int64)  # SynOps per image so far
        synops_to_decision = 0
        decisions_t = np.zeros(T, np.int64)
        correct = np.zeros(T, np.int64)
        first_current = None
        output_spikes = np.zeros((n, T, spec.layers[out].units), np.int8)  # per image, step and class
        for t in range(T):
            h = x
            if poisson:
                h = (self.rng.random(x.shape) < x).astype(np.float32)
                synops_image += self.count_ttfs("input", -1, h, t, spikes_t, synops_t)
            for i, layer in enumerate(spec.layers):
                if layer.type == "flatten":
                    h = h.reshape(n, -1)  # channels-last order, as Keras
                if i not in v:
                    continue  # flatten, dropout: no neurons
                if layer.type == "maxpool":
                    reached = pool_windows(h, layer, pad_value=0.0).max(axis=-1)  # any input of the window fired
                    s = (reached > 0) & ~fired[i] if fired[i] is not None else reached > 0
                else:
                    if i == self.spiking[0] and not poisson:
                        first_current = self.gated_current(i, h) if first_current is None else first_current
                        current = first_current  # analog input: the same current at every step
                    else:
                        current = self.gated_current(i, h)
                    if v[i] is None:
                        v[i], fired[i] = np.zeros_like(current), np.zeros(current.shape, bool)
                    # refractory for the rest of the run: a neuron that has fired integrates no more, so
                    # its membrane stays at the reset value 0 and it cannot fire again
                    v[i] = np.where(fired[i], v[i], v[i] + current)
                    s = v[i] >= 1.0  # spike at threshold 1
                    if i == out:
                        output_spikes[:, t] = s
                        first_out[s] = t + 1
                        v_fire[s] = v[i][s]
                    v[i] = np.where(s, 0.0, v[i]).astype(np.float32)  # reset to zero
                fired[i] = s if fired[i] is None else fired[i] | s
                synops_image += self.count_ttfs(names[i], i, s.astype(np.float32), t, spikes_t, synops_t)
                h = fired[i].astype(np.float32)  # persistent: every input that has fired drives its targets
            guess = self.decision(first_out, v_fire, v[out])
            now = (decided_at == 0) & (first_out.min(axis=1) <= t + 1)  # the first output spike: decided
            decided_at[now] = t + 1
            decisions_t[t] = int(now.sum())
            synops_to_decision += int(synops_image[now].sum())
            correct[t] = int(np.sum(guess == np.asarray(y)))
        spike_counts = {names[i]: fired[i].astype(np.int64) for i in self.spiking} if cfg.record_spiketrains else None
        extra = {"decisions_t": decisions_t, "synops_to_decision": synops_to_decision,
                 "undecided_images": int(np.sum(decided_at == 0))}
        return BatchResult(correct_t=correct, synops_t=synops_t, spikes_t=spikes_t, predictions=guess,
                           spike_counts=spike_counts, extra=extra, output_spikes_t=output_spikes)

    def gated_current(self, i, h):
        """``W h + b`` of spiking layer ``i``, zero for an image none of whose inputs has fired yet."""
        current = self.current(i, h)
        active = np.any(h.reshape(len(h), -1) != 0, axis=1)
        return np.where(active.reshape((-1,) + (1,) * (current.ndim - 1)), current, 0.0).astype(np.float32)

    def count_ttfs(self, name, i, s, t, spikes_t, synops_t):
        """Spikes and exact SynOps of one layer at step ``t`` (summed over the batch); returns the SynOps per image."""
        per_image = s.reshape(len(s), -1).astype(np.int64) @ self.fanout[i].astype(np.int64)
        spikes_t[name][t] = int(np.sum(s))
        synops_t[name][t] = int(per_image.sum())
        return per_image

    def decision(self, first_out, v_fire, v_out):
        """The class of each image: its earliest output spike (ties: lowest index, or the highest
        potential at firing under the ``potential`` readout); before any: -1 (or the highest potential)."""
        earliest = first_out.min(axis=1, keepdims=True)
        decided = earliest[:, 0] <= self.config.duration  # T + 1: no output spike yet
        first = first_out == earliest
        if self.config.readout == "potential":
            undecided_guess = np.argmax(v_out, axis=1)
            return np.where(decided, np.argmax(np.where(first, v_fire, -np.inf), axis=1), undecided_guess)
        return np.where(decided, np.argmax(first, axis=1), -1)

