"""Data-based weight normalisation shared by every simulator (Rueckauer et al. 2017).

For each conv/dense layer ``l`` the scale ``lambda_l`` is the ``p``-th
percentile of its non-zero activations on the normalisation images (the
input's scale is 1, pixels being in [0, 1]).  Weights become
``W * lambda_prev / lambda_l`` and biases ``b / lambda_l``, so that an IF
neuron with threshold 1 fires at rate ``activation / lambda_l``.  For the
output layer the positive part of the pre-softmax values is used (a spiking
output layer approximates ReLU, not softmax); pooling, dropout and flatten
keep the scale of their input.  Same rule as snntoolbox's
``normalize_parameters``, except for the output layer (snntoolbox takes the
softmax probabilities).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .forward import iter_layers
from .simulation import LayerWeights, NormalisationSettings
from .specs import ArchitectureSpec


def activation_scales(
    spec: ArchitectureSpec,
    weights: Mapping[str, LayerWeights],
    images: np.ndarray,
    percentile: float,
    batch_size: int = 200,
) -> dict[str, float]:
    """``lambda_l`` for every conv/dense layer of ``spec``."""
    if not 0 < percentile <= 100:
        from .errors import UsageError

        raise UsageError(f"normalisation percentile must be in (0, 100], got {percentile}")
    collected: dict[str, list[np.ndarray]] = {l.name: [] for l in spec.weight_layers}
    for start in range(0, len(images), batch_size):
        for _, layer, out in iter_layers(spec, weights, images[start : start + batch_size], pre_activation=True):
            if layer.name in collected:
                a = np.maximum(out, 0)  # ReLU output; positive logits for the classifier
                collected[layer.name].append(a[a > 0].astype(np.float32))
    scales = {}
    for name, parts in collected.items():
        values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        scales[name] = float(np.percentile(values, percentile)) if values.size else 1.0
        if not np.isfinite(scales[name]):
            from .errors import DataError

            raise DataError(f"layer {name!r}: the {percentile} percentile of its activations is {scales[name]} "
                            "(overflowing weights?); the network cannot be normalised")
        if scales[name] <= 0:
            scales[name] = 1.0
    return scales


def normalise_weights(
    spec: ArchitectureSpec, weights: Mapping[str, LayerWeights], scales: Mapping[str, float]
) -> dict[str, LayerWeights]:
    """Apply ``W * lambda_prev / lambda_l`` and ``b / lambda_l``."""
    out = {}
    prev = 1.0
    for layer in spec.weight_layers:
        w, lam = weights[layer.name], scales[layer.name]
        kernel = (w.kernel * (prev / lam)).astype(np.float32)
        bias = None if w.bias is None else (w.bias / lam).astype(np.float32)
        out[layer.name] = LayerWeights(kernel=kernel, bias=bias)
        prev = lam
    return out


def normalise(
    spec: ArchitectureSpec,
    weights: Mapping[str, LayerWeights],
    images: np.ndarray,
    settings: NormalisationSettings,
) -> tuple[dict[str, LayerWeights], dict[str, float]]:
    """Scales from ``images`` and the normalised weights, in one call."""
    net = spec.with_avg_pooling() if settings.max2avg_pool else spec
    scales = activation_scales(net, weights, images[: settings.num_images], settings.percentile)
    return normalise_weights(net, weights, scales), scales
