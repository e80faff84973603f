"""Operation counts two independent ways.

The analytic counts of :mod:`effmodel.counting` are checked against a brute
force: a direct loop convolution/pooling (written here, sharing nothing with
the core) applied to unit impulses gives each input neuron's exact fan-out
(the number of non-zero outputs), and applied to an all-ones input with an
all-ones kernel gives each output neuron's number of real taps (whose sum is
the layer's synapse count).  Whole-network figures are compared with hand
counts and with ``/work/shared/reference/architectures.md``.
"""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest

from effmodel import counting
from effmodel.specs import ArchitectureSpec, LayerSpec, load_spec_dir
from effmodel.paths import architectures_dir


# --- brute force ------------------------------------------------------------------


def _geometry(n: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) along one axis, TensorFlow's rules."""
    if padding == "valid":
        return (n - k) // s + 1, 0
    out = (n + s - 1) // s
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def loop_conv(x: np.ndarray, k: int, s: int, padding: str, filters: int) -> np.ndarray:
    """Direct convolution of ``x`` (H, W, C) with an all-ones kernel (k, k, C, F).

    Every tap contributes ``x * 1``, so with non-negative ``x`` an output is
    non-zero exactly when some real (non-padding) input it is wired to is."""
    h, w, c = x.shape
    oh, ph = _geometry(h, k, s, padding)
    ow, pw = _geometry(w, k, s, padding)
    out = np.zeros((oh, ow, filters))
    for oy, ox, f in itertools.product(range(oh), range(ow), range(filters)):
        acc = 0.0
        for ky, kx, ch in itertools.product(range(k), range(k), range(c)):
            iy, ix = oy * s - ph + ky, ox * s - pw + kx
            if 0 <= iy < h and 0 <= ix < w:
                acc += x[iy, ix, ch]
        out[oy, ox, f] = acc
    return out


def loop_pool(x: np.ndarray, k: int, s: int, padding: str) -> np.ndarray:
    """Sum pooling per channel (a pooling unit's wiring, without its max/mean)."""
    h, w, c = x.shape
    oh, ph = _geometry(h, k, s, padding)
    ow, pw = _geometry(w, k, s, padding)
    out = np.zeros((oh, ow, c))
    for oy, ox, ch in itertools.product(range(oh), range(ow), range(c)):
        for ky, kx in itertools.product(range(k), range(k)):
            iy, ix = oy * s - ph + ky, ox * s - pw + kx
            if 0 <= iy < h and 0 <= ix < w:
                out[oy, ox, ch] += x[iy, ix, ch]
    return out


def brute_force(x_shape, apply) -> tuple[np.ndarray, np.ndarray]:
    """(fan-out of every input neuron, real taps of every output neuron)."""
    fan = np.zeros(x_shape, dtype=np.int64)
    for idx in np.ndindex(*x_shape):
        impulse = np.zeros(x_shape)
        impulse[idx] = 1.0
        fan[idx] = int(np.count_nonzero(apply(impulse)))
    taps = apply(np.ones(x_shape)).round().astype(np.int64)
    return fan, taps


def _spec(input_shape, *layers: LayerSpec) -> ArchitectureSpec:
    return ArchitectureSpec(
        name="probe", dataset="none", input_shape=input_shape,
        layers=(*layers, LayerSpec(type="flatten", name="flat"), LayerSpec(type="dense", name="out", units=3)),
    )


CONV_CASES = [
    # (height, width, channels, filters, kernel, stride, padding)
    (5, 5, 2, 3, 3, 1, "same"),
    (5, 5, 2, 3, 3, 1, "valid"),
    (6, 6, 1, 2, 3, 1, "same"),
    (6, 7, 2, 2, 3, 2, "same"),   # even/odd sizes, stride 2: asymmetric padding
    (7, 6, 2, 2, 3, 2, "valid"),
    (6, 6, 1, 2, 2, 2, "same"),   # even kernel
    (8, 5, 1, 1, 5, 1, "same"),   # kernel wider than the padding on one side
    (7, 7, 1, 2, 3, 3, "valid"),  # stride 3: some inputs feed no output
]


@pytest.mark.parametrize("h,w,c,f,k,s,padding", CONV_CASES)
def test_conv_counts_match_brute_force(h, w, c, f, k, s, padding):
    conv = LayerSpec(type="conv2d", name="conv", filters=f, kernel=k, stride=s, padding=padding)
    spec = _spec((h, w, c), conv)
    fan, taps = brute_force((h, w, c), lambda x: loop_conv(x, k, s, padding, f))

    assert spec.shapes()[0][1] == taps.shape
    np.testing.assert_array_equal(counting.fanout_map(spec, -1), fan)
    layer = counting.count_network(spec).layers[0]
    assert layer.synapses == taps.sum() == fan.sum()
    assert layer.macs == taps.size * k * k * c  # nominal: every tap, padding included
    assert layer.neurons == taps.size
    assert layer.fan_in == k * k * c
    assert layer.params == k * k * c * f + f
    if padding == "valid" and s == 1:
        assert layer.synapses == layer.macs


POOL_CASES = [
    # (height, width, channels, pool, stride, padding)
    (6, 6, 2, 2, 1, "valid"),  # stride 1 means "stride = pool" in a LayerSpec
    (7, 7, 2, 2, 1, "valid"),  # odd size: the last row/column feeds nothing
    (7, 5, 1, 2, 1, "same"),
    (7, 7, 1, 3, 2, "valid"),  # overlapping windows
    (6, 7, 1, 3, 2, "same"),
]


@pytest.mark.parametrize("h,w,c,k,s,padding", POOL_CASES)
@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
def test_pool_counts_match_brute_force(h, w, c, k, s, padding, kind):
    pool = LayerSpec(type=kind, name="pool", pool=k, stride=s, padding=padding)
    stride = s if s > 1 else k
    conv = LayerSpec(type="conv2d", name="conv", filters=c, kernel=1)
    spec = _spec((h, w, c), conv, pool)
    fan, taps = brute_force((h, w, c), lambda x: loop_pool(x, k, stride, padding))

    np.testing.assert_array_equal(counting.fanout_map(spec, 0), fan)
    layer = counting.count_network(spec).layers[1]
    assert layer.output_shape == taps.shape
    assert layer.synapses == taps.sum() == fan.sum()
    assert layer.neurons == taps.size
    assert layer.macs == 0 and layer.params == 0


def test_odd_pooling_leaves_last_row_without_fanout():
    # 7x7 -> 2x2 max pooling: row 6 and column 6 are never read.
    spec = _spec((7, 7, 1), LayerSpec(type="conv2d", name="c", filters=1, kernel=1), LayerSpec(type="maxpool", name="p"))
    fan = counting.fanout_map(spec, 0)[..., 0]
    assert fan[6].sum() == 0 and fan[:, 6].sum() == 0
    assert fan[:6, :6].min() == fan[:6, :6].max() == 1


def test_conv_to_conv_exact_fanout_differs_from_nominal_at_borders():
    spec = _spec(
        (6, 6, 1),
        LayerSpec(type="conv2d", name="c1", filters=2, padding="same"),
        LayerSpec(type="conv2d", name="c2", filters=4, padding="valid"),
    )
    exact = counting.fanout_map(spec, 0)
    assert counting.nominal_fanout(spec, 0) == 3 * 3 * 4
    # a corner of a 6x6 map lies in one 3x3 'valid' window, an edge middle in 3,
    # an interior position (2..3) in 9; times 4 filters.
    assert exact[0, 0, 0] == 1 * 4
    assert exact[0, 2, 1] == 1 * 3 * 4
    assert exact[2, 3, 0] == 9 * 4
    assert exact.sum() < counting.nominal_fanout(spec, 0) * exact.size
    # the exact total equals the receiving layer's synapses: 4x4 outputs x 9 taps x 2 ch x 4 filters
    assert exact.sum() == 4 * 4 * 9 * 2 * 4 == counting.count_network(spec).layers[1].synapses


def test_dense_and_output_fanout_and_synops():
    spec = _spec((4, 4, 1), LayerSpec(type="conv2d", name="c", filters=2, padding="same"))
    # conv output (4,4,2) -> flatten -> dense(3): every neuron drives 3 synapses
    fan = counting.fanout_map(spec, 0)
    assert fan.shape == (4, 4, 2) and (fan == 3).all()
    assert counting.nominal_fanout(spec, 0) == 3
    # the output layer drives nothing
    assert counting.fanout_map(spec, 2).sum() == 0 and counting.nominal_fanout(spec, 2) == 0
    spikes = np.zeros((2, 4, 4, 2))
    spikes[0, 1, 1, 0] = 5
    spikes[1, 3, 0, 1] = 2
    assert counting.synops_of_spikes(spec, 0, spikes) == (5 + 2) * 3
    # the input image feeds a 'same' conv: the corner pixel reaches 2x2 positions x 2 filters
    assert counting.synops_of_spikes(spec, -1, np.ones((1, 4, 4, 1))) == counting.count_network(spec).layers[0].synapses


# --- the eight reference networks -------------------------------------------------------


@pytest.fixture(scope="module")
def reference():
    return {s.name: s for s in load_spec_dir(architectures_dir())}


# exact trainable parameters from /work/shared/reference/architectures.md
PARAMS = {
    "SmallCNN1": 347_146, "MediumCNN1": 356_394, "LargeCNN1": 68_282, "DeepCNN1": 70_410,
    "SmallCNN2": 3_691_018, "MediumCNN2": 3_727_946, "LargeCNN2": 1_250_858, "DeepCNN2": 1_411_242,
}


def test_params_match_architectures_md(reference):
    assert {name: counting.count_network(spec).params for name, spec in reference.items()} == PARAMS


def test_smallcnn1_macs_by_hand(reference):
    # conv 26*26*32 outputs x 9 taps + dense 5408*64 + dense 64*10
    macs = 26 * 26 * 32 * 9 + 5408 * 64 + 64 * 10
    assert macs == 541_440
    c = counting.count_network(reference["SmallCNN1"])
    assert c.macs == 541_440
    assert c.synapses == 541_440  # all 'valid': no padding taps
    # snntoolbox: 2*MACs + one bias add per conv/dense neuron (21,632 + 64 + 10)
    assert c.flops_snntoolbox == 2 * 541_440 + 21_706 == 1_104_586
    assert c.flops_2mac == 1_082_880
    # exact: n mults + (n-1) adds + 1 bias = 2n per neuron
    assert c.flops_exact == 1_082_880
    # spiking neurons add the 13*13*32 pooling units
    assert c.neurons == 21_706 and c.spiking_neurons == 21_706 + 5_408


def test_mediumcnn2_macs_by_hand(reference):
    macs = 32 * 32 * 64 * (9 * 3) + 30 * 30 * 64 * (9 * 64) + 14400 * 256 + 256 * 10
    assert macs == 38_636_032
    c = counting.count_network(reference["MediumCNN2"])
    assert c.macs == 38_636_032
    # the 'same' first conv on 32x32: per axis 30 positions see 3 taps, 2 see 2 -> 94 of 96
    real_first = 94 * 94 * 3 * 64
    assert c.layers[0].synapses == real_first
    assert c.synapses == real_first + 30 * 30 * 64 * 576 + 14400 * 256 + 2560
    bias = 32 * 32 * 64 + 30 * 30 * 64 + 256 + 10
    assert c.flops_snntoolbox == 2 * 38_636_032 + bias


def test_flop_conventions(reference):
    # MediumCNN2 by hand (padded first conv, see above): every neuron has a
    # bias, so exact = 2 x real synapses: n mults + (n-1) adds + 1 bias.
    c = counting.count_network(reference["MediumCNN2"])
    synapses = 94 * 94 * 3 * 64 + 30 * 30 * 64 * 576 + 14400 * 256 + 2560
    assert synapses == 38_563_072
    assert c.flops("exact") == c.flops_exact == 77_126_144
    assert c.flops("2mac") == 77_272_064  # 2 x 38,636,032 nominal MACs
    assert c.flops("snntoolbox") == 77_272_064 + 123_402  # + one bias add per conv/dense neuron
    # A padded conv without bias: 4x4 input, 3x3 'same', 2 filters.  Per axis
    # the 4 windows see 2, 3, 3, 2 real taps: 10 x 10 x 2 = 200 synapses on
    # 32 neurons: 200 mults + (200 - 32) adds = 368 FLOPs; nominal 32 x 9 =
    # 288 MACs.  Dense 32 -> 3 with bias: 2 x 96 = 192 (snntoolbox 195).
    spec = ArchitectureSpec(name="nobias", dataset="none", input_shape=(4, 4, 1), layers=(
        LayerSpec(type="conv2d", name="c", filters=2, kernel=3, padding="same", use_bias=False),
        LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="d", units=3)))
    c = counting.count_network(spec)
    assert (c.synapses, c.macs, c.neurons) == (200 + 96, 288 + 96, 35)
    assert c.flops("exact") == 368 + 192
    assert c.flops("2mac") == 2 * 288 + 192
    assert c.flops("snntoolbox") == 2 * 288 + 195
    for spec in reference.values():
        c = counting.count_network(spec)
        assert c.flops_exact <= c.flops_2mac <= c.flops_snntoolbox
    from effmodel.errors import UsageError

    with pytest.raises(UsageError):
        counting.count_network(reference["SmallCNN1"]).flops("bogus")


def test_depth_conv_dense_match_table2(reference, table2_path):
    with open(table2_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    for row in rows:
        spec = reference[row["model"]]
        assert spec.dataset == row["dataset"]
        assert (spec.depth, spec.conv_layers, spec.dense_layers) == (
            int(row["depth_trainable"]), int(row["conv_layers"]), int(row["dense_layers"]))


def test_nominal_and_exact_fanout_differ_only_on_conv_to_conv_links(reference):
    spec = reference["LargeCNN1"]
    # layer 0: conv 'same' 28x28x16 -> conv 'valid' 16 filters
    exact = counting.fanout_map(spec, 0)
    assert counting.nominal_fanout(spec, 0) == 144
    assert exact[0, 0, 0] == 16 and exact[14, 14, 0] == 144 and exact[0, 14, 0] == 48
    assert exact.sum() == counting.count_network(spec).layers[1].synapses == 26 * 26 * 9 * 16 * 16
    # layer 1 feeds a 2x2 pooling of an even map: exact = nominal = 1 everywhere
    pool_fan = counting.fanout_map(spec, 1)
    assert (pool_fan == 1).all() and counting.nominal_fanout(spec, 1) == 1
    # layer 5 (conv 'valid' 32x11x11) feeds a 2x2 pool: the 11th row/column is dropped
    fan5 = counting.fanout_map(spec, 5)
    assert fan5.shape == (11, 11, 32) and fan5.sum() == 10 * 10 * 32
