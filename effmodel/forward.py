"""A framework-free numpy forward pass of an :class:`ArchitectureSpec`.

Used to compute normalisation activations without TensorFlow, and as an
independent reference the Keras and spiking implementations are tested
against.  Inputs are NHWC float arrays; kernels use Keras' layouts (HWIO for
convolutions, IO for dense layers).
"""

from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np

from .specs import ArchitectureSpec, LayerSpec, same_padding


def _pad(x: np.ndarray, layer: LayerSpec, k: int, s: int, value: float = 0.0) -> np.ndarray:
    if layer.padding != "same":
        return x
    ph = same_padding(x.shape[1], k, s)
    pw = same_padding(x.shape[2], k, s)
    return np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=value)


def conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, layer: LayerSpec) -> np.ndarray:
    k, s = layer.kernel, layer.stride
    xp = _pad(x, layer, k, s)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]
    # win: (B, OH, OW, C, k, k); kernel: (k, k, C, F)
    out = np.tensordot(win, kernel, axes=([4, 5, 3], [0, 1, 2]))
    if bias is not None:
        out = out + bias
    return out.astype(np.float32, copy=False)


def pool2d(x: np.ndarray, layer: LayerSpec) -> np.ndarray:
    k, s = layer.pool, layer.pool_stride
    if layer.type == "maxpool":
        xp = _pad(x, layer, k, s, value=-np.inf)
        win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]
        return win.max(axis=(4, 5))
    # average pooling, Keras semantics: padding taps are excluded from the mean
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=x.dtype)
    xp, op = _pad(x, layer, k, s), _pad(ones, layer, k, s)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::s, ::s]
    cnt = np.lib.stride_tricks.sliding_window_view(op, (k, k), axis=(1, 2))[:, ::s, ::s]
    return (win.sum(axis=(4, 5)) / cnt.sum(axis=(4, 5))).astype(x.dtype)


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(z, 0)
    if activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return z


def iter_layers(
    spec: ArchitectureSpec, weights: Mapping[str, object], x: np.ndarray, pre_activation: bool = False
) -> Iterator[tuple[int, LayerSpec, np.ndarray]]:
    """Yield ``(index, layer, output)`` for each layer; dropout is identity.

    With ``pre_activation`` the conv/dense outputs are yielded before their
    activation function (the next layer still receives the activated value).
    """
    h = np.asarray(x, dtype=np.float32)
    for i, layer in enumerate(spec.layers):
        if layer.type == "conv2d" or layer.type == "dense":
            w = weights[layer.name]
            kernel, bias = w.kernel, w.bias  # type: ignore[attr-defined]
            z = conv2d(h, kernel, bias, layer) if layer.type == "conv2d" else (h @ kernel + (0 if bias is None else bias))
            h = activate(z, layer.activation).astype(np.float32, copy=False)
            yield i, layer, (z if pre_activation else h)
            continue
        if layer.type in ("maxpool", "avgpool"):
            h = pool2d(h, layer)
        elif layer.type == "flatten":
            h = h.reshape(len(h), -1)
        yield i, layer, h


def predict(spec: ArchitectureSpec, weights: Mapping[str, object], x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Output-layer activations (softmax probabilities for the reference models)."""
    outs = []
    for start in range(0, len(x), batch_size):
        *_, (_, _, out) = iter_layers(spec, weights, x[start : start + batch_size])
        outs.append(out)
    return np.concatenate(outs)
