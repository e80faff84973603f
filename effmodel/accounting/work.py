"""The work each network does per image, layer by layer (issue 13).

Everything is per image and per *receiving* layer (conv, dense or pooling:
the layers that have inputs to combine).  :class:`LayerWork` holds what was
counted or measured (taps, SynOps, spikes at the cost point); how that work
becomes memory accesses is :mod:`effmodel.accounting.access`, what it costs
:mod:`effmodel.accounting.pricing`.

A layer's ``synops`` are the SynOps that *arrive* at it (the emitting
layer's spikes times their exact fan-out).  The first layer receives the
network's input: with analog input it has no SynOps (the SNN evaluates
``W x`` as MACs, see the first-layer policies); with Poisson input the
simulator reports the input's spikes as a layer named ``"input"``, and they
arrive at the first layer as SynOps like any other layer's
(:attr:`LayerWork.spiking_input`).

Max-pooling units are not neurons: a spiking max pool passes on the spikes of
its strongest input, so it has no membrane potential to update
(:attr:`LayerWork.has_membrane`).  Average pooling converts to IF neurons with
fixed weights and keeps its membranes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..specs import ArchitectureSpec
from .ops import POOL_TYPES, NetworkCount, _prod, count_network, fanout_map, spiking_layer_indices

INPUT_SERIES = "input"  # the simulators' name for Poisson input spikes


@dataclass(frozen=True)
class LayerWork:
    """Per-image work of one receiving layer for the ANN and the SNN.

    ``inputs``: values the layer reads (its input tensor's size); ``params``:
    weights and biases it holds; ``neurons``: its outputs.  SNN figures are
    per image up to ``steps`` (the cost point).
    """

    name: str
    type: str
    index: int
    inputs: int
    params: int
    neurons: int
    dense_ops: float  # real taps (MACs for conv/dense, pooling taps)
    effective_ops: float  # the same, only taps whose input value is nonzero
    synops: float  # SynOps arriving (0 for an analog first layer)
    spikes_in: float
    spikes_out: float
    steps: int
    first: bool = False  # receives the network's input

    @property
    def has_weights(self) -> bool:
        return self.type in ("conv2d", "dense")

    @property
    def has_membrane(self) -> bool:
        """Whether the SNN keeps a membrane potential per unit (not max pooling)."""
        return self.type != "maxpool"

    @property
    def spiking_input(self) -> bool:
        """The first layer receives spikes (Poisson input), not analog values."""
        return self.first and (self.synops > 0 or self.spikes_in > 0)

    def ann_ops(self, zero_skipping: bool = False) -> float:
        return self.effective_ops if zero_skipping else self.dense_ops

    @property
    def ann_neuron_activations(self) -> int:
        return self.neurons if self.has_weights else 0

    @property
    def snn_neuron_updates(self) -> int:
        """Neuron updates up to the cost point: every unit with a membrane, every step."""
        return self.neurons * self.steps if self.has_membrane else 0

    def input_evaluations(self, first_layer) -> int:
        """How often the SNN evaluates the analog first layer's ``W x``
        (``first_layer``: a policy of :mod:`.access` or its name)."""
        from .access import first_layer_policy

        policy = first_layer_policy(first_layer)
        if not self.first or self.spiking_input:
            return 0
        return policy.evaluations(self.steps)

    def snn_input_macs(self, first_layer, zero_skipping: bool = False) -> float:
        return self.ann_ops(zero_skipping) * self.input_evaluations(first_layer)


@dataclass(frozen=True)
class NetworkWork:
    """Per-layer work of one simulated network at its cost point."""

    spec_name: str
    steps: int
    layers: tuple[LayerWork, ...]

    def total(self, attr: str) -> float:
        return float(sum(getattr(l, attr) for l in self.layers))

    @property
    def ann_neuron_activations(self) -> int:
        return int(sum(l.ann_neuron_activations for l in self.layers))

    @property
    def snn_neuron_updates(self) -> int:
        return int(sum(l.snn_neuron_updates for l in self.layers))

    @property
    def input_macs_per_step(self) -> float:
        """The first layer's analog-input MACs for one evaluation (dense)."""
        return float(self.layers[0].dense_ops) if self.layers else 0.0

    @property
    def ann_effective_macs(self) -> float:
        """MACs with a nonzero input, conv and dense layers only (pooling taps are not MACs)."""
        return float(sum(l.effective_ops for l in self.layers if l.has_weights))

    @property
    def synapses(self) -> float:
        """Real conv/dense connections (the unit of Dampfhoffer et al.'s SynOps per synapse)."""
        return float(sum(l.dense_ops for l in self.layers if l.has_weights))

    def ann_accesses(self, zero_skipping: bool = False):
        from .access import AccessCounts, ann_accesses

        out = AccessCounts()
        for l in self.layers:
            out = out + ann_accesses(l, zero_skipping)
        return out

    def snn_accesses(self, first_layer="excluded", zero_skipping: bool = False):
        from .access import AccessCounts, snn_accesses

        out = AccessCounts()
        for l in self.layers:
            out = out + snn_accesses(l, first_layer, zero_skipping)
        return out

    def scaled_activity(self, factor: float) -> "NetworkWork":
        """The same network with every SynOp and spike scaled by ``factor``
        (neuron updates and the first layer's analog MACs do not depend on
        spikes): how the SNN's cost moves with its spike rate."""
        from dataclasses import replace

        return replace(self, layers=tuple(replace(l, synops=l.synops * factor, spikes_in=l.spikes_in * factor,
                                                  spikes_out=l.spikes_out * factor) for l in self.layers))


def _source_index(spec: ArchitectureSpec, index: int) -> int:
    """The layer whose output feeds receiving layer ``index`` (-1: the input),
    skipping dropout and flatten."""
    j = index - 1
    while j >= 0 and spec.layers[j].type in ("dropout", "flatten"):
        j -= 1
    return j


def ann_effective_ops(spec: ArchitectureSpec, weights, images: np.ndarray, batch_size: int = 200) -> dict[str, float]:
    """Per receiving layer, the taps whose input value is nonzero, per image
    (the zero-skipping ANN's MACs), from a numpy forward pass over ``images``
    in batches.  Nonzero inputs times their exact fan-out into that layer."""
    from ..forward import iter_layers

    receivers = spiking_layer_indices(spec)
    sources = {i: _source_index(spec, i) for i in receivers}
    fans = {i: fanout_map(spec, sources[i]).reshape(-1).astype(np.float64) for i in receivers}
    totals = {i: 0.0 for i in receivers}
    n = len(images)
    for start in range(0, n, batch_size):
        x = np.asarray(images[start : start + batch_size], dtype=np.float32)
        outs = {-1: x}
        for i, layer, out in iter_layers(spec, weights, x):
            outs[i] = out
        for i in receivers:
            nz = (outs[sources[i]].reshape(len(x), -1) != 0).sum(axis=0).astype(np.float64)
            totals[i] += float(nz @ fans[i])
    return {spec.layers[i].name: totals[i] / max(n, 1) for i in receivers}


def network_work(
    spec: ArchitectureSpec,
    steps: int,
    num_images: int,
    synops_t: "dict[str, np.ndarray] | None" = None,
    spikes_t: "dict[str, np.ndarray] | None" = None,
    effective_ops: "dict[str, float] | None" = None,
) -> NetworkWork:
    """Per-layer work at the cost point ``steps``.

    ``synops_t``/``spikes_t``: per spiking layer, per step, summed over
    ``num_images`` images (a :class:`SimulationResult`'s series; SynOps are
    keyed by the *emitting* layer and are attributed here to the layer that
    receives them; Poisson input's are keyed ``"input"`` and arrive at the
    first layer).  ``effective_ops``: from :func:`ann_effective_ops`; without
    it the effective count equals the dense one.
    """
    counts = count_network(spec)
    synops_t, spikes_t, effective_ops = synops_t or {}, spikes_t or {}, effective_ops or {}
    n = max(int(num_images), 1)

    def upto(series: "dict[str, np.ndarray]", name: str) -> float:
        v = series.get(name)
        return float(np.sum(np.asarray(v, dtype=np.float64)[:steps])) / n if v is not None else 0.0

    layers = []
    for i in spiking_layer_indices(spec):
        c, layer = counts.layers[i], spec.layers[i]
        src = _source_index(spec, i)
        src_name = spec.layers[src].name if src >= 0 else INPUT_SERIES
        dense = float(c.synapses)
        layers.append(LayerWork(
            name=layer.name, type=layer.type, index=i, inputs=_prod(c.input_shape), params=c.params,
            neurons=c.neurons, dense_ops=dense, effective_ops=float(effective_ops.get(layer.name, dense)),
            synops=upto(synops_t, src_name), spikes_in=upto(spikes_t, src_name),
            spikes_out=upto(spikes_t, layer.name), steps=int(steps), first=src < 0,
        ))
    return NetworkWork(spec_name=spec.name, steps=int(steps), layers=tuple(layers))


def work_from_counts(counts: NetworkCount) -> NetworkWork:
    """The ANN side of :class:`NetworkWork` from static counts alone (dense
    MACs, no SNN activity): enough to price an ANN."""
    layers, first = [], True
    for i, c in enumerate(counts.layers):
        if c.type not in ("conv2d", "dense", *POOL_TYPES):
            continue
        layers.append(LayerWork(name=c.name, type=c.type, index=i, inputs=_prod(c.input_shape), params=c.params,
                                neurons=c.neurons, dense_ops=float(c.synapses), effective_ops=float(c.synapses),
                                synops=0.0, spikes_in=0.0, spikes_out=0.0, steps=0, first=first))
        first = False
    return NetworkWork(spec_name=counts.spec_name, steps=0, layers=tuple(layers))
