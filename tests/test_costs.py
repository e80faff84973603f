"""Cost models against the report's formula worked by hand."""

from __future__ import annotations

import math

import pytest

from effmodel.costs import CostModel, load_cost_models
from effmodel.counting import LayerCount, NetworkCount, count_network
from effmodel.errors import UsageError
from effmodel.paths import architectures_dir
from effmodel.specs import load_spec_file


@pytest.fixture(scope="module")
def presets():
    from effmodel.plugins import get_cost_models

    return dict(get_cost_models())


@pytest.fixture(scope="module")
def smallcnn1():
    return count_network(load_spec_file(architectures_dir() / "1-SmallCNN1.toml"))


def _network_with_flops(flops: int) -> NetworkCount:
    """One dense layer whose exact FLOPs are ``flops`` (2n per neuron with n taps and a bias)."""
    neurons = 100
    synapses = flops // 2
    layer = LayerCount(name="d", type="dense", input_shape=(synapses // neurons,), output_shape=(neurons,),
                       params=synapses + neurons, neurons=neurons, fan_in=synapses // neurons,
                       macs=synapses, synapses=synapses, bias_adds=neurons)
    net = NetworkCount(spec_name="hand", layers=(layer,))
    assert net.flops_exact == flops
    return net


def test_report_total_costs_by_hand(presets):
    # Table 2, SmallCNN1: 0.80 MFLOPs -> 0.40 M x 14 + 0.40 M x 1 = 6.0 M
    m = presets["report-14x"]
    assert m.ann_cost(_network_with_flops(800_000)) == pytest.approx(6_000_000)
    # MediumCNN2: 8.47 MFLOPs -> 8.47/2 x 15 = 63.525 M (Table 2 prints 63.542)
    assert m.ann_cost(_network_with_flops(8_470_000)) == pytest.approx(63_525_000)
    # factor = Total-Costs / SO-Costs: 6.0 M / 0.13 M SynOps
    assert m.factor(_network_with_flops(800_000), 130_000) == pytest.approx(6_000_000 / 130_000)


def test_report_14x_on_smallcnn1(presets, smallcnn1):
    exact = 1_082_880  # 2 * 541,440 (all 'valid', one bias per neuron)
    snnt = 1_104_586  # 2 * 541,440 + 21,706 bias adds
    assert presets["report-14x"].ann_cost(smallcnn1) == pytest.approx(exact / 2 * 15)
    assert presets["report-14x-snntoolbox"].ann_cost(smallcnn1) == pytest.approx(snnt / 2 * 15)
    assert presets["ratio-5x"].ann_cost(smallcnn1) == pytest.approx(exact / 2 * 6)
    assert presets["ratio-32x"].ann_cost(smallcnn1) == pytest.approx(exact / 2 * 33)


def test_energy_presets_on_smallcnn1(presets, smallcnn1):
    macs, bias = 541_440, 21_706
    fp = presets["horowitz-fp32"]
    assert fp.ann_cost(smallcnn1) == pytest.approx(macs * 4.6 + bias * 0.9)  # 2,510,159.4 pJ
    assert fp.ann_cost(smallcnn1) == pytest.approx(2_510_159.4)
    assert fp.snn_cost(1_000_000) == pytest.approx(900_000)
    assert fp.factor(smallcnn1, 1_000_000) == pytest.approx(2_510_159.4 / 900_000)
    i32 = presets["horowitz-int32"]
    assert i32.ann_cost(smallcnn1) == pytest.approx(macs * 3.2 + bias * 0.1)
    assert i32.mac_to_synop == pytest.approx(32)
    loihi = presets["loihi"]
    assert loihi.snn_cost(1_000, neuron_updates=10) == pytest.approx(1_000 * 23.6 + 10 * 81)
    assert loihi.factor(smallcnn1, 1_000, 10) == pytest.approx((macs * 4.6 + bias * 0.9) / 24_410)


def test_factor_edges_and_errors():
    m = CostModel(name="x", mac=2.0, add=1.0, synop=1.0)
    net = _network_with_flops(200)
    assert m.ann_cost(net) == 100 * 2.0 + 100 * 1.0
    assert math.isinf(m.factor(net, 0))  # no SynOps at all: infinitely cheaper
    assert m.factor(net, 300) == 1.0  # break-even
    bad = CostModel(name="bad", mac=1.0, add=1.0, synop=1.0, ann_convention="joules")
    with pytest.raises(UsageError, match="joules"):
        bad.ann_cost(net)


def test_load_cost_models_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[models.a]\nmac = 1.0\nadd = 1.0\nsynop = 1.0\nvolts = 3\n")
    with pytest.raises(UsageError, match="'a'"):
        load_cost_models(p)
    with pytest.raises(UsageError, match="cannot read"):
        load_cost_models(tmp_path / "missing.toml")
    p.write_text("[models.b]\nmac = 1.0\nadd = 0.5\nsynop = 0.25\n")
    (b,) = load_cost_models(p)
    assert (b.name, b.mac_to_synop, b.ann_convention) == ("b", 4.0, "macs")
