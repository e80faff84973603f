"""Data-based normalisation: afterwards the chosen percentile of every
layer's (positive) activations is 1, computed here with an independent
forward pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from effmodel.normalisation import activation_scales, normalise
from effmodel.simulation import LayerWeights, NormalisationSettings
from effmodel.specs import ArchitectureSpec, LayerSpec

SPEC = ArchitectureSpec(
    name="tiny", dataset="none", input_shape=(6, 6, 2),
    layers=(
        LayerSpec(type="conv2d", name="c1", filters=3, kernel=3, padding="same"),
        LayerSpec(type="maxpool", name="p1", pool=2),
        LayerSpec(type="conv2d", name="c2", filters=4, kernel=2, padding="valid"),
        LayerSpec(type="dropout", name="d", rate=0.5),
        LayerSpec(type="flatten", name="f"),
        LayerSpec(type="dense", name="h", units=5),
        LayerSpec(type="dense", name="out", units=3, activation="softmax"),
    ),
)


def _weights(rng) -> dict[str, LayerWeights]:
    return {
        "c1": LayerWeights(rng.normal(0, 0.5, (3, 3, 2, 3)).astype(np.float32), rng.normal(0.1, 0.1, 3).astype(np.float32)),
        "c2": LayerWeights(rng.normal(0, 0.5, (2, 2, 3, 4)).astype(np.float32), rng.normal(0.1, 0.1, 4).astype(np.float32)),
        "h": LayerWeights(rng.normal(0, 0.5, (16, 5)).astype(np.float32), rng.normal(0.1, 0.1, 5).astype(np.float32)),
        "out": LayerWeights(rng.normal(0, 0.5, (5, 3)).astype(np.float32), None),
    }


def _conv_loop(x, kernel, bias, pad):
    """Direct convolution, stride 1, symmetric zero padding ``pad``."""
    b, h, w, c = x.shape
    k, f = kernel.shape[0], kernel.shape[3]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    out = np.zeros((b, oh, ow, f), np.float64)
    for oy, ox in itertools.product(range(oh), range(ow)):
        patch = xp[:, oy:oy + k, ox:ox + k, :]
        out[:, oy, ox, :] = np.einsum("bijc,ijcf->bf", patch, kernel)
    return out + (0 if bias is None else bias)


def _activations(weights, x) -> dict[str, np.ndarray]:
    """Positive part of each conv/dense layer's pre-activation (= ReLU output)."""
    acts = {}
    z = _conv_loop(x, weights["c1"].kernel, weights["c1"].bias, pad=1)
    acts["c1"] = np.maximum(z, 0)
    b = len(x)
    p = acts["c1"].reshape(b, 3, 2, 3, 2, 3).max(axis=(2, 4))  # 2x2 max pooling of 6x6
    z = _conv_loop(p, weights["c2"].kernel, weights["c2"].bias, pad=0)
    acts["c2"] = np.maximum(z, 0)
    z = acts["c2"].reshape(b, -1) @ weights["h"].kernel + weights["h"].bias
    acts["h"] = np.maximum(z, 0)
    z = acts["h"] @ weights["out"].kernel
    acts["out"] = np.maximum(z, 0)
    return acts


def _percentile_of_positive(a, q):
    return float(np.percentile(a[a > 0], q))


@pytest.mark.parametrize("q", [99.9, 99.0, 50.0])
def test_percentile_maps_to_one_after_normalisation(q):
    rng = np.random.default_rng(7)
    weights = _weights(rng)
    images = rng.uniform(0, 1, (300, 6, 6, 2)).astype(np.float32)

    before = _activations(weights, images.astype(np.float64))
    norm, scales = normalise(SPEC, weights, images, NormalisationSettings(percentile=q, num_images=200))
    # scales are the percentiles of the first 200 images' positive activations
    ref = _activations(weights, images[:200].astype(np.float64))
    for name in ("c1", "c2", "h", "out"):
        assert scales[name] == pytest.approx(_percentile_of_positive(ref[name], q), rel=1e-4), name
    after = _activations(norm, images[:200].astype(np.float64))
    for name in ("c1", "c2", "h", "out"):
        assert _percentile_of_positive(after[name], q) == pytest.approx(1.0, rel=1e-4), name
        # and the network still computes the same thing, scaled
        np.testing.assert_allclose(after[name] * scales[name], ref[name], rtol=1e-3, atol=1e-4)
    assert norm["out"].bias is None
    assert before["c1"].shape == (300, 6, 6, 3)


def test_dead_layer_gets_scale_one():
    weights = _weights(np.random.default_rng(0))
    weights["h"] = LayerWeights(-np.abs(weights["h"].kernel) - 1, np.full(5, -1, np.float32))  # never active
    images = np.random.default_rng(1).uniform(0, 1, (20, 6, 6, 2)).astype(np.float32)
    scales = activation_scales(SPEC, weights, images, 99.9)
    assert scales["h"] == 1.0


def test_bad_percentile():
    from effmodel.errors import UsageError

    with pytest.raises(UsageError):
        activation_scales(SPEC, _weights(np.random.default_rng(0)), np.zeros((1, 6, 6, 2), np.float32), 0)
