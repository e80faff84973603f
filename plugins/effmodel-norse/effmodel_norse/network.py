"""Convert a :class:`~effmodel.simulation.ConvertedNetwork` into a torch network of Norse neurons.

Layout: every *spiking layer* of the simulated spec (conv, dense, pooling;
see :func:`effmodel.counting.spiking_layer_indices`) becomes one
:class:`Stage` = a synapse module (:mod:`effmodel_norse.synapses`: conv /
linear / average pooling, applied to all steps of a time chunk at once)
followed by a stateful neuron module (:mod:`effmodel_norse.neurons`, the
torch reference of every neuron model) that scans over the chunk's time
axis.  Tensors inside a stage are shaped ``(Tc, B, C, H, W)`` (or
``(Tc, B, N)``), torch's NCHW order.

The CPU backend (:mod:`effmodel_norse.cpu_backend`) replaces neuron modules
by numba kernels computing the same floats; a new neuron model or code is a
new neuron module here, with no kernel until one is written for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from effmodel.counting import spiking_layer_indices
from effmodel.simulation import ConvertedNetwork
from effmodel.specs import ArchitectureSpec

from .neurons import (NEURONS, AdaptiveSpiking, AsnParameters, IFResetZero, IFSubtract, NorseIAF, NorseLIF, SpikeMaxPool,
                      TimeScan, TtfsIF, TtfsMaxPool, import_norse, spike_height)
from .synapses import AvgPool, Conv, Dense, HeldSpikes, SpikeHeight, chw, gate_silent_images, torch_padding

RESETS = ("subtract", "zero")
"""The ``reset`` option's values (``if`` and ``adaptive`` neurons)."""

CODINGS = ("rate", "ttfs")
"""The neural codes :func:`build_network` builds (``--coding``)."""



@dataclass
class StageInfo:
    """Static facts about one spiking layer."""

    name: str
    index: int  # index in the simulated spec
    type: str
    shape_hwc: tuple[int, ...]  # the layer's output shape, Keras order


class Stage(nn.Module):
    """One spiking layer: ``synapse`` (None for max pooling) then ``neuron``."""

    def __init__(self, info: StageInfo, synapse: nn.Module | None, neuron: TimeScan):
        super().__init__()
        self.info = info
        self.synapse = synapse
        self.neuron = neuron

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the synapse to a time chunk ``(Tc, B, ...)`` in one call."""
        tc, b = x.shape[:2]
        y = self.synapse(x.reshape(tc * b, *x.shape[2:]))
        return y.reshape(tc, b, *y.shape[1:])

    def reset(self) -> None:
        self.neuron.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.synapse is None:
            return self.neuron(x)
        return self.neuron(self.current(x))


class TtfsStage(Stage):
    """A conv, dense or average pooling layer under time-to-first-spike
    coding: its inputs' spikes are held (:class:`~effmodel_norse.synapses.HeldSpikes`;
    not for the first layer, whose input is not a TTFS layer), and an image
    none of whose inputs has fired gets no current
    (:func:`~effmodel_norse.synapses.gate_silent_images`)."""

    def __init__(self, info: StageInfo, synapse: nn.Module, neuron: TimeScan, hold_inputs: bool):
        super().__init__(info, synapse, neuron)
        self.held = HeldSpikes() if hold_inputs else None

    def reset(self) -> None:
        super().reset()
        if self.held is not None:
            self.held.reset()

    def current(self, x: torch.Tensor) -> torch.Tensor:
        if self.held is not None:
            x = self.held(x)
        return gate_silent_images(super().current(x), x)


class SpikingNetwork(nn.Module):
    """The converted network: a list of :class:`Stage` in order."""

    def __init__(self, spec: ArchitectureSpec, stages: list[Stage]):
        super().__init__()
        self.spec = spec
        self.stages = nn.ModuleList(stages)

    def reset(self) -> None:
        for st in self.stages:
            st.reset()

    def set_constant_first_input(self, constant: bool) -> None:
        """Tell the first stage's neuron whether every chunk of the coming
        batch carries the same current (analog input): a kernel then reads
        it once (:class:`~effmodel_norse.cpu_backend.KernelIF`)."""
        neuron = self.stages[0].neuron
        if hasattr(neuron, "constant_input"):
            neuron.constant_input = constant

    def forward(self, x: torch.Tensor, first_current: torch.Tensor | None = None) -> torch.Tensor:
        """Simulate one time chunk.  ``x``: input ``(Tc, B, C, H, W)`` (spikes
        or analog values); or ``first_current``: the first layer's current
        ``(Tc, B, ...)`` already computed (analog input: same at every step)."""
        stages = list(self.stages)
        if first_current is not None:
            h = stages[0].neuron(first_current)
            stages = stages[1:]
        else:
            h = x
        for st in stages:
            h = st(h)
        return h

    @torch.no_grad()
    def analog_forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ANN computed with the same synapse modules (ReLU instead of
        spikes, true max pooling): per stage output, NCHW.  For tests."""
        outs = []
        h = x
        for st in self.stages:
            if isinstance(st.neuron, SpikeMaxPool):
                h = st.neuron.analog(h)
            else:
                h = torch.relu(st.synapse(h))
            outs.append(h)
        return outs


def build_network(
    network: ConvertedNetwork,
    neuron: str = "if",
    dtype: torch.dtype = torch.float32,
    lif_tau_mem_inv: float = 100.0,
    lif_tau_syn_inv: float | None = None,
    coding: str = "rate",
    reset: str = "subtract",
    asn: AsnParameters = AsnParameters(),
) -> SpikingNetwork:
    """Build the torch network of ``network.simulated_spec`` with its
    normalised weights, for rate coding (neurons as ``neuron`` and ``reset``
    say; ``asn``: the adaptive neurons' constants) or ``coding="ttfs"``
    (:class:`TtfsStage` with TTFS neurons; ``neuron`` must be ``"if"``: the
    code brings its own)."""
    from effmodel.errors import UsageError

    if neuron not in NEURONS:
        raise UsageError(f"unknown norse neuron {neuron!r} (use one of {', '.join(NEURONS)})")
    if coding not in CODINGS:
        raise UsageError(f"norse has no coding {coding!r} (use one of {', '.join(CODINGS)})")
    ttfs = coding == "ttfs"
    if ttfs and neuron != "if":
        raise UsageError(f"norse --coding ttfs has its own neuron (fires once, resets to zero); neuron={neuron} is for rate coding")
    if reset not in RESETS:
        raise UsageError(f"norse reset must be one of {', '.join(RESETS)}, got {reset!r}")
    adaptive = neuron == "adaptive"
    height = spike_height(asn) if adaptive else 1.0
    spec = network.simulated_spec
    shapes = spec.shapes()
    spiking = set(spiking_layer_indices(spec))

    def make_neuron(bias: np.ndarray | None = None, conv: bool = False) -> TimeScan:
        if ttfs:
            return TtfsIF(dtype)
        if adaptive:  # the first layer takes its current directly; a conv bias broadcasts over NCHW
            b = None if bias is None else torch.from_numpy(np.asarray(bias, np.float64))
            return AdaptiveSpiking(asn, b if b is None or not conv else b[:, None, None], direct=not stages, reset=reset)
        if neuron == "if":
            return IFSubtract(dtype) if reset == "subtract" else IFResetZero(dtype)
        if neuron == "iaf":
            return NorseIAF(dtype)
        return NorseLIF(dtype, lif_tau_mem_inv, lif_tau_syn_inv)

    stages: list[Stage] = []
    flat_from: tuple[int, int, int] | None = None  # CHW before the pending flatten
    for i, layer in enumerate(spec.layers):
        in_shape, out_shape = shapes[i]
        if layer.type == "flatten":
            if len(in_shape) == 3:
                flat_from = (in_shape[2], in_shape[0], in_shape[1])
            continue
        if i not in spiking:
            continue  # dropout
        info = StageInfo(layer.name, i, layer.type, tuple(out_shape))
        if layer.type == "conv2d":
            h, w, _ = in_shape
            w_ = network.normalised_weights[layer.name]
            bias = None if adaptive else w_.bias  # adaptive neurons hold the bias themselves (the constant part of S)
            syn: nn.Module | None = Conv(w_.kernel, bias, layer.stride, torch_padding(layer, h, w, layer.kernel, layer.stride))
            neu = make_neuron(w_.bias, conv=True)
        elif layer.type == "dense":
            w_ = network.normalised_weights[layer.name]
            syn = Dense(w_.kernel, None if adaptive else w_.bias, flat_from)
            flat_from = None
            neu = make_neuron(w_.bias)
        elif layer.type == "avgpool":
            h, w, _ = in_shape
            k, s = layer.pool, layer.pool_stride
            syn = AvgPool(k, s, torch_padding(layer, h, w, k, s), (h, w))
            neu = make_neuron()
        else:  # maxpool
            h, w, _ = in_shape
            k, s = layer.pool, layer.pool_stride
            syn = None
            neu = (TtfsMaxPool if ttfs else SpikeMaxPool)(k, s, torch_padding(layer, h, w, k, s))
        if adaptive and syn is not None and stages:
            syn = SpikeHeight(syn, height)  # spikes of height H into every layer after the first
        if ttfs and syn is not None:
            stages.append(TtfsStage(info, syn, neu, hold_inputs=bool(stages)))
        else:
            stages.append(Stage(info, syn, neu))
    return SpikingNetwork(spec, stages).eval()


__all__ = ["CODINGS", "NEURONS", "RESETS", "IFSubtract", "NorseIAF", "NorseLIF", "SpikeMaxPool", "SpikingNetwork", "Stage", "StageInfo",
           "TimeScan", "TtfsStage", "build_network", "chw", "import_norse"]
