"""Issue 10: the fast paths compute what the plain ones do; device settings are
chosen per device, checked, and restored.  GPU checks are skipped without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effmodel.errors import UsageError
from effmodel.simulation import ConvertedNetwork, LayerWeights, NormalisationSettings, SimulationConfig, simulate
from effmodel.specs import spec_from_dict
from effmodel_norse import NorseSimulator
from effmodel_norse.network import SpikeMaxPool
from effmodel_norse.simulator import CPU_BATCH_SIZE, auto_batch_size, choose_mode

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the GPU path is checked on a GPU machine)")


def _tiny_network(seed: int = 0) -> ConvertedNetwork:
    """A padded conv -> conv -> max pool -> dense net with random weights: its
    conv -> conv link has border-dependent fan-outs (the GEMV counting path)."""
    spec = spec_from_dict({
        "name": "tiny", "dataset": "mnist", "input_shape": [9, 8, 2],
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel": 3, "padding": "same"},
            {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same"},
            {"type": "maxpool", "pool": 2},
            {"type": "flatten"},
            {"type": "dense", "units": 5, "activation": "softmax"},
        ],
    })
    rng = np.random.default_rng(seed)
    shapes = {"conv2d_1": (3, 3, 2, 3), "conv2d_2": (3, 3, 3, 4)}
    w = {n: LayerWeights((rng.random(s) * 0.6 - 0.1).astype(np.float32), (rng.random(s[-1]) * 0.1).astype(np.float32)) for n, s in shapes.items()}
    flat = int(np.prod(spec.shapes()[3][1]))
    w["dense_1"] = LayerWeights((rng.random((flat, 5)) * 0.4 - 0.1).astype(np.float32), np.zeros(5, np.float32))
    return ConvertedNetwork(spec=spec, weights=w, normalised_weights=w, scale_factors={}, normalisation=NormalisationSettings())


def _brute_fanout_same_conv(h: int, w: int, k: int, filters: int) -> np.ndarray:
    """Per input position of a stride-1 'same' k x k conv: how many (output
    position, filter) pairs read it, by looping over every output window."""
    fan = np.zeros((h, w), dtype=np.int64)
    p = (k - 1) // 2
    for i in range(h):
        for j in range(w):
            for di in range(k):
                for dj in range(k):
                    a, b = i - p + di, j - p + dj
                    if 0 <= a < h and 0 <= b < w:
                        fan[a, b] += 1
    return fan * filters


def test_keyed_max_pool_equals_tap_by_tap_gate():
    """The one-max-per-window path gives the spikes of the general gate, step
    by step and in chunks (ties are frequent: few steps, many equal counts)."""
    g = torch.Generator().manual_seed(3)
    for k, hw in ((2, (6, 7)), (3, (9, 7))):
        spikes = (torch.rand((12, 2, 3, *hw), generator=g) < 0.4).float()
        plain = SpikeMaxPool(k, k, (0, 0, 0, 0))
        want = plain(spikes)
        assert not plain.keyed(plain.max_steps)
        for chunk in (1, 5, 12):
            fast = SpikeMaxPool(k, k, (0, 0, 0, 0))
            fast.max_steps = 12
            assert fast.keyed(12)
            got = torch.cat([fast(spikes[t : t + chunk]) for t in range(0, 12, chunk)])
            assert torch.equal(got, want), (k, chunk)
        assert want.sum() > 0


def test_keyed_path_refuses_overlapping_padded_or_long_runs():
    assert not SpikeMaxPool(3, 2, (0, 0, 0, 0)).keyed(100)
    assert not SpikeMaxPool(2, 2, (0, 1, 0, 1)).keyed(100)
    assert SpikeMaxPool(2, 2, (0, 0, 0, 0)).keyed(100)
    assert not SpikeMaxPool(2, 2, (0, 0, 0, 0)).keyed(2**21)  # keys would pass 2**24


def test_gemv_counting_equals_brute_force_fanout():
    """SynOps of the first conv's spikes (feeding a padded conv: border fan-outs
    differ) equal per-neuron spike counts times a fan-out counted by loops."""
    net = _tiny_network()
    x = np.random.default_rng(1).random((6, 9, 8, 2)).astype(np.float32)
    cfg = SimulationConfig(duration=15, batch_size=6, record_spiketrains=True, options={"device": "cpu"})
    r = simulate(NorseSimulator(), net, [(x, np.arange(6) % 5)], cfg)
    counts = r.first_batch_spike_counts["conv2d_1"]  # (B, H, W, C)
    assert counts.sum() > 0
    want = int((counts.sum(axis=(0, 3)) * _brute_fanout_same_conv(9, 8, 3, 4)).sum())
    assert int(r.synops_t["conv2d_1"].sum()) == want
    assert int(r.spikes_t["conv2d_1"].sum()) == int(counts.sum())


def test_mode_rule_per_device():
    spec = _tiny_network().spec
    assert choose_mode(spec, "cpu") == "stepwise"  # the torch path (kernels=off)
    assert choose_mode(spec, "cpu", kernels=True) == "layerwise"  # the numba kernels, the CPU default
    assert choose_mode(spec, torch.device("cuda")) == "layerwise"


def test_cpu_auto_batch_size_and_cap():
    net = _tiny_network()
    assert auto_batch_size(net, 100, 10000, {"device": "cpu"}) == CPU_BATCH_SIZE == 50
    assert auto_batch_size(net, 100, 7, {"device": "cpu"}) == 7


def test_threads_option_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    s = NorseSimulator().open(_tiny_network(), SimulationConfig(duration=3, options={"device": "cpu", "threads": 1}))
    assert torch.get_num_threads() == 1
    s.close()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("opts, words", [
    ({"threads": 0}, "norse threads must be 'auto' or a positive integer, got 0"),
    ({"threads": "many"}, "norse threads must be 'auto' or a positive integer"),
    ({"precision": "fp16"}, "norse precision must be one of fp32, tf32, got 'fp16'"),
])
def test_bad_performance_options(opts, words):
    with pytest.raises(UsageError, match=words):
        NorseSimulator().open(_tiny_network(), SimulationConfig(duration=3, options={"device": "cpu", **opts}))


@cuda
def test_cuda_flags_set_during_and_restored_after():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
    seen = {}
    s = NorseSimulator().open(_tiny_network(), SimulationConfig(duration=4, options={"device": "cuda"}))
    original = s._run_batch

    def spy(x, y):
        seen["flags"] = (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32)
        return original(x, y)

    s._run_batch = spy
    s.run_batch(np.zeros((2, 9, 8, 2), np.float32), np.zeros(2, np.int64))
    s.close()
    assert seen["flags"] == (True, False, False)
    assert (cudnn.benchmark, cudnn.allow_tf32, matmul.allow_tf32) == before


@cuda
def test_cuda_auto_batch_size_fits_free_memory():
    net = _tiny_network()
    free_before, _ = torch.cuda.mem_get_info()
    b = auto_batch_size(net, 100, 10**9, {"device": "cuda"})
    free_after, _ = torch.cuda.mem_get_info()
    neurons = 9 * 8 * 2 + 9 * 8 * 3 + 9 * 8 * 4 + 4 * 4 * 4 + 5  # input, conv, conv, pool, dense (by hand)
    per_image = neurons * (16 * 5 + 8 + 4) + 100 * 64
    want = sorted(int(f * 0.5) // per_image for f in (free_before, free_after))
    assert want[0] <= b <= want[1]
    assert auto_batch_size(net, 100, 300, {"device": "cuda"}) == 300


@cuda
@pytest.mark.slow
def test_gpu_matches_cpu(network, mnist):
    """Same network, same 200 images: identical accuracy at every step and
    SynOps within 1e-6 relative (fp32, TF32 off), analog and Poisson input."""
    from effmodel.datasets import iter_batches

    for encoding in ("analog", "poisson"):
        runs = {}
        for device in ("cpu", "cuda"):
            cfg = SimulationConfig(duration=50, batch_size=100, input_encoding=encoding, options={"device": device})
            runs[device] = simulate(NorseSimulator(), network, iter_batches(mnist.x_test, mnist.y_test, 100, 200), cfg)
        cpu, gpu = runs["cpu"], runs["cuda"]
        assert gpu.metadata["extra"]["norse_device"].startswith("cuda")
        if encoding == "analog":  # Poisson draws come from different generators per device
            np.testing.assert_array_equal(cpu.correct_t, gpu.correct_t)
            for name in cpu.synops_t:
                a, b = float(cpu.synops_t[name].sum()), float(gpu.synops_t[name].sum())
                assert abs(a - b) <= 1e-6 * max(a, 1.0), name
        else:
            assert abs(cpu.accuracy - gpu.accuracy) <= 0.02
