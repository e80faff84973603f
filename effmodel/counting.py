"""Exact operation counts of a network, layer by layer.

Counting conventions (all stated in the report's methods section):

``macs``
    Nominal multiply-accumulates: output neurons x nominal fan-in
    (``k*k*C_in`` for a convolution, input units for a dense layer).  'same'
    padding taps, which multiply a zero, are included.  This is the usual
    "MAC" figure and the one the issue's hand counts use.
``synapses``
    Real connections: MACs minus the taps that fall on zero padding.  Equal
    to ``macs`` for 'valid' convolutions and dense layers.
``flops_exact`` (effmodel's default ANN FLOP count)
    Per conv/dense neuron with ``n`` real taps: ``n`` multiplications,
    ``n - 1`` additions, plus one bias addition if it has a bias:
    ``2*synapses - neurons + bias_adds``.  Pooling, ReLU and softmax are not
    counted (they are comparisons/exponentials, not MACs).
``flops_snntoolbox``
    snntoolbox's ``get_ann_ops`` (Rueckauer et al. 2017):
    ``2 * sum(neurons x nominal fan-in) + neurons with bias``, i.e.
    ``2*macs + bias_adds``.
``flops_2mac``
    ``2*macs``: the common "one MAC = two FLOPs".

Fan-out of a neuron is the exact number of synapses it drives in the next
layer that receives input (conv, dense or pooling; dropout and flatten pass
through), with borders, strides and padding taken into account.  A synaptic
operation (SynOp) is one spike delivered over one synapse, so the SynOps of a
layer's spikes are ``sum(spike_count * fanout)``.  snntoolbox's nominal
fan-out (``k*k*filters`` / ``units`` / 1) ignores borders; it is available as
:func:`nominal_fanout` for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .specs import POOL_TYPES, ArchitectureSpec, LayerSpec, same_padding


@dataclass(frozen=True)
class LayerCount:
    """Counts for one layer; ``neurons`` are its output units."""

    name: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    neurons: int
    fan_in: int  # nominal fan-in of one output neuron
    macs: int
    synapses: int
    bias_adds: int

    @property
    def flops_exact(self) -> int:
        if self.type not in ("conv2d", "dense"):
            return 0
        return 2 * self.synapses - self.neurons + self.bias_adds

    @property
    def flops_snntoolbox(self) -> int:
        return 2 * self.macs + self.bias_adds

    @property
    def flops_2mac(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class NetworkCount:
    """Whole-network totals plus the per-layer breakdown."""

    spec_name: str
    layers: tuple[LayerCount, ...]

    def _sum(self, attr: str) -> int:
        return int(sum(getattr(l, attr) for l in self.layers))

    @property
    def params(self) -> int:
        return self._sum("params")

    @property
    def macs(self) -> int:
        return self._sum("macs")

    @property
    def synapses(self) -> int:
        """Real conv/dense connections (MACs without padding taps)."""
        return int(sum(l.synapses for l in self.layers if l.type in ("conv2d", "dense")))

    @property
    def pool_synapses(self) -> int:
        """Connections into pooling layers (each carries SynOps in an SNN)."""
        return int(sum(l.synapses for l in self.layers if l.type in POOL_TYPES))

    @property
    def neurons(self) -> int:
        """Conv and dense output units (the ANN's neurons)."""
        return int(sum(l.neurons for l in self.layers if l.type in ("conv2d", "dense")))

    @property
    def spiking_neurons(self) -> int:
        """Neurons that spike in a converted SNN: conv, dense and pooling units."""
        return int(sum(l.neurons for l in self.layers if l.type in ("conv2d", "dense", *POOL_TYPES)))

    @property
    def flops_exact(self) -> int:
        return self._sum("flops_exact")

    @property
    def flops_snntoolbox(self) -> int:
        return self._sum("flops_snntoolbox")

    @property
    def flops_2mac(self) -> int:
        return self._sum("flops_2mac")

    def flops(self, convention: str = "exact") -> int:
        try:
            return {"exact": self.flops_exact, "snntoolbox": self.flops_snntoolbox, "2mac": self.flops_2mac}[convention]
        except KeyError:
            from .errors import UsageError

            raise UsageError(f"unknown FLOP convention {convention!r} (use exact, snntoolbox or 2mac)") from None


def _prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _axis_pad(layer: LayerSpec, size: int, k: int, s: int) -> int:
    return same_padding(size, k, s)[0] if layer.padding == "same" else 0


def axis_taps(n_in: int, n_out: int, k: int, s: int, pad_lo: int) -> np.ndarray:
    """For each output position, how many of its ``k`` window taps are real
    (inside the input) rather than padding."""
    o = np.arange(n_out)
    start = o * s - pad_lo
    lo = np.maximum(start, 0)
    hi = np.minimum(start + k - 1, n_in - 1)
    return np.maximum(hi - lo + 1, 0)


def axis_fanout(n_in: int, n_out: int, k: int, s: int, pad_lo: int) -> np.ndarray:
    """For each input position, how many output windows contain it."""
    i = np.arange(n_in) + pad_lo
    first = np.maximum(-(-(i - k + 1) // s), 0)  # ceil((i-k+1)/s)
    last = np.minimum(i // s, n_out - 1)
    return np.maximum(last - first + 1, 0)


def count_layer(layer: LayerSpec, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> LayerCount:
    neurons = _prod(out_shape) if layer.type in ("conv2d", "dense", *POOL_TYPES) else 0
    params = fan_in = macs = synapses = bias_adds = 0
    if layer.type == "conv2d":
        (h, w, c), (oh, ow, f) = in_shape, out_shape
        k, s = layer.kernel, layer.stride
        fan_in = k * k * c
        params = fan_in * f + (f if layer.use_bias else 0)
        macs = neurons * fan_in
        th = axis_taps(h, oh, k, s, _axis_pad(layer, h, k, s))
        tw = axis_taps(w, ow, k, s, _axis_pad(layer, w, k, s))
        synapses = int(th.sum() * tw.sum()) * c * f
        bias_adds = neurons if layer.use_bias else 0
    elif layer.type == "dense":
        fan_in = in_shape[0]
        params = fan_in * layer.units + (layer.units if layer.use_bias else 0)
        macs = synapses = neurons * fan_in
        bias_adds = neurons if layer.use_bias else 0
    elif layer.type in POOL_TYPES:
        (h, w, c), (oh, ow, _) = in_shape, out_shape
        k, s = layer.pool, layer.pool_stride
        fan_in = k * k
        th = axis_taps(h, oh, k, s, _axis_pad(layer, h, k, s))
        tw = axis_taps(w, ow, k, s, _axis_pad(layer, w, k, s))
        synapses = int(th.sum() * tw.sum()) * c
    return LayerCount(
        name=layer.name,
        type=layer.type,
        input_shape=tuple(in_shape),
        output_shape=tuple(out_shape),
        params=params,
        neurons=neurons,
        fan_in=fan_in,
        macs=macs,
        synapses=synapses,
        bias_adds=bias_adds,
    )


@lru_cache(maxsize=256)
def count_network(spec: ArchitectureSpec) -> NetworkCount:
    """Exact per-layer and total counts of ``spec``."""
    layers = tuple(count_layer(l, i, o) for l, (i, o) in zip(spec.layers, spec.shapes()))
    return NetworkCount(spec_name=spec.name, layers=layers)


# --- fan-out ------------------------------------------------------------------------


def _next_receiver(spec: ArchitectureSpec, index: int) -> tuple[LayerSpec | None, tuple[int, ...], tuple[int, ...]]:
    """The first layer after ``index`` that receives synapses, with its shapes.

    ``index = -1`` means the input image.  Dropout and flatten are skipped;
    the returned input shape is that of the source layer before any flatten.
    """
    shapes = spec.shapes()
    src_shape = tuple(spec.input_shape) if index < 0 else shapes[index][1]
    for j in range(index + 1, len(spec.layers)):
        layer = spec.layers[j]
        if layer.type in ("dropout", "flatten"):
            continue
        return layer, src_shape, shapes[j][1]
    return None, src_shape, ()


def fanout_map(spec: ArchitectureSpec, index: int) -> np.ndarray:
    """Exact fan-out of every neuron of layer ``index`` (``-1``: the input),
    shaped like that layer's output (channels_last, no batch axis)."""
    target, src_shape, dst_shape = _next_receiver(spec, index)
    if target is None:
        return np.zeros(src_shape, dtype=np.int64)
    if target.type == "dense":
        return np.full(src_shape, target.units, dtype=np.int64)
    if len(src_shape) != 3:
        raise ValueError(f"{target.type} after a flat layer")
    h, w, c = src_shape
    oh, ow = dst_shape[0], dst_shape[1]
    if target.type == "conv2d":
        k, s, mult = target.kernel, target.stride, target.filters
    else:
        k, s, mult = target.pool, target.pool_stride, 1
    fh = axis_fanout(h, oh, k, s, _axis_pad(target, h, k, s))
    fw = axis_fanout(w, ow, k, s, _axis_pad(target, w, k, s))
    per_pos = np.outer(fh, fw).astype(np.int64) * mult
    return np.repeat(per_pos[:, :, None], c, axis=2)


def nominal_fanout(spec: ArchitectureSpec, index: int) -> int:
    """snntoolbox's border-blind fan-out: ``k*k*filters`` (stride 1),
    ``units`` for dense, 1 for pooling, 0 for the output layer."""
    target, _, _ = _next_receiver(spec, index)
    if target is None:
        return 0
    if target.type == "dense":
        return target.units
    if target.type == "conv2d":
        return target.kernel * target.kernel * target.filters
    return 1


def spiking_layer_indices(spec: ArchitectureSpec) -> list[int]:
    """Indices of layers whose neurons spike in a converted SNN."""
    return [i for i, l in enumerate(spec.layers) if l.type in ("conv2d", "dense", *POOL_TYPES)]


def synops_of_spikes(spec: ArchitectureSpec, index: int, spikes: np.ndarray) -> int:
    """SynOps caused by ``spikes`` (counts shaped ``(..., *layer_shape)``) of
    layer ``index``: the sum of spike counts times exact fan-out."""
    fan = fanout_map(spec, index)
    s = np.asarray(spikes).reshape(-1, fan.size)
    return int((s.astype(np.int64) @ fan.reshape(-1)).sum())


# --- fair accounting: ANN and SNN work per layer, on the same footing ---------------
#
# The access model (issue 13).  Everything is per image and per *receiving*
# layer (conv, dense or pooling: the layers that have inputs to combine).
#
# ANN (one pass, output-stationary: each partial sum stays in a register):
#   arithmetic  one MAC per real tap of a conv/dense layer (``dense_ops``; the
#               'same'-padding taps that multiply a zero are not counted, as
#               the SNN's exact fan-out does not count them either), or with
#               zero skipping only the taps whose input value is nonzero
#               (``effective_ops``, measured on the simulated images); one
#               pooling operation per pooling tap; one *neuron activation*
#               (bias add and ReLU) per conv/dense output.
#   memory      one weight read per MAC; one activation read per MAC or
#               pooling operation (the input value of that tap); one
#               activation write per output neuron.
# SNN (event driven: a spike is read once and fanned out):
#   arithmetic  one SynOp per spike and target synapse (``synops``, up to the
#               cost point); one *neuron update* (integrate the input current
#               and bias, compare with the threshold, reset) per spiking
#               neuron and time step up to the cost point; the first layer's
#               analog input needs real MACs (``input_macs`` per evaluation,
#               dense or zero-skipping like the ANN), charged by the first-
#               layer policy: ``excluded`` (0 times, the report), ``once`` (its
#               current is computed once and reused) or ``every-step``.
#   memory      one weight read per SynOp into a conv/dense layer and per input
#               MAC; one membrane read and one write per SynOp (read-add-write
#               of the target's potential) and per neuron update; one spike
#               read per arriving spike, one spike write per emitted spike; one
#               activation read per input MAC (the pixel).  Under ``once`` the
#               first layer's current is written once per neuron beside its
#               potential and read back at every neuron update (one more state
#               read and, once, one state write per neuron).
# Pooling has no stored weights on either side, so it causes no weight reads.
# Biases are held with the neuron state and are not read separately.  What a
# read or write costs depends on the size of the tensor it touches (the cost
# model picks the memory level: see :mod:`effmodel.costs`).

FIRST_LAYER_POLICIES = ("excluded", "once", "every-step")
ACCESS_KINDS = ("weight_reads", "act_reads", "act_writes", "membrane_reads", "membrane_writes",
                "spike_reads", "spike_writes")


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
    synops: float  # SynOps arriving (0 for the first layer: its input is analog)
    spikes_in: float
    spikes_out: float
    steps: int
    first: bool = False  # receives the network's (analog) input

    @property
    def has_weights(self) -> bool:
        return self.type in ("conv2d", "dense")

    def ann_ops(self, zero_skipping: bool = False) -> float:
        return self.effective_ops if zero_skipping else self.dense_ops

    @property
    def ann_neuron_activations(self) -> int:
        return self.neurons if self.has_weights else 0

    @property
    def snn_neuron_updates(self) -> int:
        return self.neurons * self.steps

    def input_evaluations(self, first_layer: str) -> int:
        """How often the SNN evaluates the analog first layer's ``W x``."""
        if not self.first:
            return 0
        if first_layer not in FIRST_LAYER_POLICIES:
            from .errors import UsageError

            raise UsageError(f"unknown first-layer policy {first_layer!r} (use {', '.join(FIRST_LAYER_POLICIES)})")
        return {"excluded": 0, "once": 1, "every-step": self.steps}[first_layer]

    def snn_input_macs(self, first_layer: str, zero_skipping: bool = False) -> float:
        return self.ann_ops(zero_skipping) * self.input_evaluations(first_layer)


@dataclass(frozen=True)
class AccessCounts:
    """Memory accesses of one layer by kind (see the access model above)."""

    weight_reads: float = 0.0
    act_reads: float = 0.0
    act_writes: float = 0.0
    membrane_reads: float = 0.0
    membrane_writes: float = 0.0
    spike_reads: float = 0.0
    spike_writes: float = 0.0

    def __add__(self, other: "AccessCounts") -> "AccessCounts":
        return AccessCounts(*(getattr(self, k) + getattr(other, k) for k in ACCESS_KINDS))

    @property
    def total(self) -> float:
        return float(sum(getattr(self, k) for k in ACCESS_KINDS))


def ann_accesses(layer: LayerWork, zero_skipping: bool = False) -> AccessCounts:
    ops = layer.ann_ops(zero_skipping)
    return AccessCounts(weight_reads=ops if layer.has_weights else 0.0, act_reads=ops, act_writes=float(layer.neurons))


def snn_accesses(layer: LayerWork, first_layer: str = "excluded", zero_skipping: bool = False) -> AccessCounts:
    macs = layer.snn_input_macs(first_layer, zero_skipping)
    rw = layer.synops + layer.snn_neuron_updates
    stored = layer.first and first_layer == "once"  # the stored input current
    return AccessCounts(
        weight_reads=(layer.synops if layer.has_weights else 0.0) + macs,
        act_reads=macs,
        membrane_reads=rw + (layer.snn_neuron_updates if stored else 0),
        membrane_writes=rw + (layer.neurons if stored else 0),
        spike_reads=layer.spikes_in,
        spike_writes=layer.spikes_out,
    )


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

    def ann_accesses(self, zero_skipping: bool = False) -> AccessCounts:
        out = AccessCounts()
        for l in self.layers:
            out = out + ann_accesses(l, zero_skipping)
        return out

    def snn_accesses(self, first_layer: str = "excluded", zero_skipping: bool = False) -> AccessCounts:
        out = AccessCounts()
        for l in self.layers:
            out = out + snn_accesses(l, first_layer, zero_skipping)
        return out


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
    from .forward import iter_layers

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
    receives them).  ``effective_ops``: from :func:`ann_effective_ops`; without
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
        src_name = spec.layers[src].name if src >= 0 else None
        dense = float(c.synapses)
        layers.append(LayerWork(
            name=layer.name, type=layer.type, index=i, inputs=_prod(c.input_shape), params=c.params,
            neurons=c.neurons, dense_ops=dense, effective_ops=float(effective_ops.get(layer.name, dense)),
            synops=upto(synops_t, src_name) if src_name else 0.0,
            spikes_in=upto(spikes_t, src_name) if src_name else 0.0,
            spikes_out=upto(spikes_t, layer.name), steps=int(steps), first=src < 0,
        ))
    return NetworkWork(spec_name=spec.name, steps=int(steps), layers=tuple(layers))
