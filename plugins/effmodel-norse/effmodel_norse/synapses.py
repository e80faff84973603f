"""The synapses of the torch network: convolution, dense and average pooling
modules with Keras semantics, applied to a whole time chunk at once.

Keras vs torch layouts, handled once at conversion:

* conv kernels HWIO -> OIHW; 'same' padding is Keras/TF padding
  (:func:`effmodel.specs.same_padding`), asymmetric when the total is odd,
  applied with ``F.pad`` before a 'valid' convolution;
* Keras flattens NHWC, torch NCHW: instead of permuting every activation
  before flatten, the rows of the first dense kernel after a flatten are
  permuted once from HWC to CHW order.  The result is the same linear map,
  and the exported NIR graph uses the very same weights (bit-identical
  currents between the simulator and ``norse.torch.from_nir``);
* average pooling divides by the number of *real* taps at padded borders
  (Keras semantics).

Under time-to-first-spike coding a spike is a persistent step of current:
:class:`HeldSpikes` turns each step's spikes into the map of the inputs that
have fired so far, which the synapse then weighs at every step.

Spiking max pooling has no synapse: its gate is a neuron module
(:mod:`effmodel_norse.neurons`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from effmodel.specs import LayerSpec, same_padding


def torch_padding(layer: LayerSpec, h: int, w: int, k: int, s: int) -> tuple[int, int, int, int]:
    """Keras 'same' padding as ``F.pad`` wants it: (left, right, top, bottom)."""
    if layer.padding != "same":
        return (0, 0, 0, 0)
    top, bottom = same_padding(h, k, s)
    left, right = same_padding(w, k, s)
    return (left, right, top, bottom)


def chw(shape_hwc: tuple[int, ...]) -> tuple[int, ...]:
    """A layer's shape in Keras order (H, W, C) -> torch's (C, H, W); flat shapes unchanged."""
    return (shape_hwc[2], shape_hwc[0], shape_hwc[1]) if len(shape_hwc) == 3 else tuple(shape_hwc)


class Conv(nn.Module):
    """2-D convolution with Keras 'same'/'valid' padding, weights OIHW."""

    def __init__(self, kernel_hwio: np.ndarray, bias: np.ndarray | None, stride: int, pad: tuple[int, int, int, int]):
        super().__init__()
        self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(kernel_hwio.transpose(3, 2, 0, 1))))
        self.register_buffer("bias", None if bias is None else torch.from_numpy(np.asarray(bias)))
        self.stride = stride
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)
        return F.conv2d(x, self.weight, self.bias, self.stride)


class Dense(nn.Module):
    """Fully connected layer on the flattened (NCHW-order) input."""

    def __init__(self, kernel_io: np.ndarray, bias: np.ndarray | None, chw: tuple[int, int, int] | None):
        super().__init__()
        k = np.asarray(kernel_io)
        if chw is not None:  # rows in Keras' HWC order -> torch's CHW order
            c, h, w = chw
            k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        self.register_buffer("weight", torch.from_numpy(np.ascontiguousarray(k.T)))
        self.register_buffer("bias", None if bias is None else torch.from_numpy(np.asarray(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.flatten(1), self.weight, self.bias)


class AvgPool(nn.Module):
    """Average pooling with Keras semantics (padding taps excluded from the mean)."""

    def __init__(self, k: int, s: int, pad: tuple[int, int, int, int], in_hw: tuple[int, int]):
        super().__init__()
        self.k, self.s, self.pad = k, s, pad
        if any(pad):
            ones = F.pad(torch.ones(1, 1, *in_hw), pad)
            self.register_buffer("taps", F.avg_pool2d(ones, k, s) * (k * k))
        else:
            self.taps = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.taps is None:
            return F.avg_pool2d(x, self.k, self.s)
        return F.avg_pool2d(F.pad(x, self.pad), self.k, self.s) * (self.k * self.k) / self.taps.to(x.dtype)


class HeldSpikes(nn.Module):
    """TTFS's persistent synapse input (Rueckauer & Liu 2018; snntoolbox's
    post-synaptic potential wherever ``last_spiketimes > 0``): from the
    step an input neuron fires on, its targets receive its weight at every
    step.  Maps a chunk of spikes ``(Tc, B, ...)`` to which inputs have fired
    by each step (0/1, same dtype); the state persists across chunks until
    :meth:`reset`."""

    def __init__(self):
        super().__init__()
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        fired = torch.cumsum(spikes, 0).clamp_(max=1)
        if self.state is not None:
            fired = torch.maximum(fired, self.state)
        self.state = fired[-1].clone()
        return fired


class SpikeHeight(nn.Module):
    """``synapse`` fed spikes of height ``height`` instead of 1: the adaptive
    spiking neurons' conversion rule (:func:`effmodel_norse.neurons.spike_height`).
    The spikes are scaled before the synapse, as the numpy reference does,
    so that the currents are the same floats."""

    def __init__(self, synapse: nn.Module, height: float):
        super().__init__()
        self.synapse, self.height = synapse, float(height)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.synapse(x * self.height)


def gate_silent_images(current: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``current`` ``(Tc, B, ...)`` set to zero (bias included) for an image
    none of whose ``inputs`` ``(Tc, B, ...)`` is non-zero at that step: under
    TTFS a layer receives nothing until one of its inputs has fired (as the
    numpy reference, per image; snntoolbox decides it for the whole batch)."""
    active = inputs.flatten(2).ne(0).any(-1)  # (Tc, B)
    active = active.reshape(*active.shape, *([1] * (current.dim() - 2)))
    return torch.where(active, current, torch.zeros((), dtype=current.dtype, device=current.device))


__all__ = ["AvgPool", "Conv", "Dense", "HeldSpikes", "SpikeHeight", "chw", "gate_silent_images", "torch_padding"]
