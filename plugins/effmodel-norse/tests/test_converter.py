"""The torch network computes the same function as effmodel's numpy forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effmodel.forward import iter_layers
from effmodel.simulation import ConvertedNetwork, LayerWeights, NormalisationSettings
from effmodel.specs import spec_from_dict
from effmodel_norse.network import IFSubtract, SpikeMaxPool, build_network, import_norse

pytestmark = pytest.mark.slow


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _to_keras(t: torch.Tensor) -> np.ndarray:
    a = t.numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def test_first_conv_current_equals_numpy_forward(network, test_batch):
    x, _ = test_batch
    net = build_network(network)
    current = net.stages[0].current(_nchw(x)[None])[0]
    _, layer, z = next(iter_layers(network.simulated_spec, network.normalised_weights, x, pre_activation=True))
    assert layer.name == net.stages[0].info.name == "conv2d_1"
    np.testing.assert_allclose(_to_keras(current), z, rtol=1e-5, atol=1e-5)


def _check_analog(network, x):
    """Every stage of the torch network (ReLU instead of spikes) vs numpy."""
    net = build_network(network)
    outs = net.analog_forward(_nchw(x))
    ref = {layer.name: out for _, layer, out in iter_layers(network.simulated_spec, network.normalised_weights, x, pre_activation=True)}
    for st, out in zip(net.stages, outs):
        want = np.maximum(ref[st.info.name], 0)
        np.testing.assert_allclose(_to_keras(out), want, rtol=1e-4, atol=1e-4, err_msg=st.info.name)
    return net


def test_whole_network_matches_numpy_forward(network, network_avg, test_batch):
    x, _ = test_batch
    _check_analog(network, x)  # max pooling, flatten order (dense rows permuted HWC -> CHW)
    _check_analog(network_avg, x)


def test_asymmetric_same_padding_and_padded_pooling():
    """Keras 'same' with stride 2 on even sizes pads more at the bottom/right;
    'same' average pooling divides border windows by their real taps."""
    spec = spec_from_dict({
        "name": "pad", "dataset": "mnist", "input_shape": [10, 9, 2],
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel": 4, "stride": 2, "padding": "same"},
            {"type": "avgpool", "pool": 3, "stride": 2, "padding": "same"},
            {"type": "conv2d", "filters": 4, "kernel": 2, "padding": "same"},
            {"type": "maxpool", "pool": 3, "stride": 2, "padding": "same"},
            {"type": "flatten"},
            {"type": "dense", "units": 5, "activation": "softmax"},
        ],
    })
    rng = np.random.default_rng(0)
    shapes = {"conv2d_1": (4, 4, 2, 3), "conv2d_2": (2, 2, 3, 4)}
    weights = {n: LayerWeights(rng.normal(size=s).astype(np.float32), rng.normal(size=s[-1]).astype(np.float32)) for n, s in shapes.items()}
    flat = int(np.prod(spec.shapes()[4][1]))
    weights["dense_1"] = LayerWeights(rng.normal(size=(flat, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32))
    net = ConvertedNetwork(spec=spec, weights=weights, normalised_weights=weights, scale_factors={}, normalisation=NormalisationSettings())
    _check_analog(net, rng.random((3, 10, 9, 2), dtype=np.float32))


def test_max_pool_gate_equals_max_pool_indices():
    """The tap-by-tap gate picks the same input as max_pool2d's argmax (ties included)."""
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 3, (2, 4, 3, 9, 8), generator=g).float()  # many ties
    spikes = torch.randint(0, 2, counts.shape, generator=g).float()
    for k, s in ((2, 2), (3, 2), (3, 1)):
        gate = SpikeMaxPool(k, s, (0, 0, 0, 0))
        got = gate.gate(counts, spikes)
        _, idx = F.max_pool2d(counts.reshape(8, 3, 9, 8), k, s, return_indices=True)
        want = spikes.reshape(8, 3, 72).gather(2, idx.reshape(8, 3, -1)).reshape(got.shape)
        assert torch.equal(got, want), (k, s)


def test_if_neuron_equals_norse_primitives():
    """IFSubtract's in-place update is bit-identical to Norse's reset_subtract."""
    nt = import_norse()
    from norse.torch.functional.reset import reset_subtract

    g = torch.Generator().manual_seed(2)
    current = torch.rand(40, 5, 7, generator=g) * 0.9 - 0.2
    neuron = IFSubtract(torch.float32)
    neuron.record_v = True
    z_got = neuron(current)
    p = nt.IAFParameters(v_th=torch.tensor(1.0))
    v = torch.zeros(5, 7)
    for t in range(40):
        v = v + current[t]
        z = (v >= p.v_th).float()
        v = reset_subtract(z, v, p.v_reset, p.v_th)
        assert torch.equal(z_got[t], z) and torch.equal(neuron.v_trace[t], v), t
    assert z_got.sum() > 0
