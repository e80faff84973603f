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

from ..specs import POOL_TYPES, ArchitectureSpec, LayerSpec, same_padding


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
    def membrane_neurons(self) -> int:
        """Units that keep a membrane potential in a converted SNN, i.e. that
        cost a neuron update per step: conv, dense and average-pooling units.
        A max pool passes on its strongest input's spikes and has no membrane
        (as :attr:`effmodel.accounting.work.LayerWork.has_membrane`)."""
        return int(sum(l.neurons for l in self.layers if l.type in ("conv2d", "dense", "avgpool")))

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
            from ..errors import UsageError

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
