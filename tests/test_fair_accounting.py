"""Fair accounting (issue 13): every new count, access and cost on a tiny
network worked out by hand, plus the effective-MAC count against a brute
force on real MNIST images.

The tiny network: a 4x4x1 input, conv 3x3 'valid' with 2 filters (-> 2x2x2),
max pooling 2 (-> 1x1x2), flatten, dense 3 (softmax).  The image has two
nonzero pixels, at (0,0) and (3,3).  Filter 0 is all +1, filter 1 all -1,
biases 0.  The SNN series are made up (T = 4) and the cost point is step 3.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from effmodel.costs import CostModel
from effmodel.counting import (AccessCounts, ann_accesses, ann_effective_ops, count_network, network_work,
                               snn_accesses)
from effmodel.errors import UsageError
from effmodel.simulation import LayerWeights
from effmodel.specs import ArchitectureSpec, LayerSpec
from effmodel.threshold import cost_point_step, iso_accuracy_step


def registered() -> dict[str, CostModel]:
    """The presets as the core sees them: through the plugin registry."""
    from effmodel.plugins import get_cost_models

    return dict(get_cost_models())


def tiny_spec() -> ArchitectureSpec:
    return ArchitectureSpec(
        name="tiny", dataset="mnist", input_shape=(4, 4, 1),
        layers=(LayerSpec(type="conv2d", name="conv", filters=2, kernel=3),
                LayerSpec(type="maxpool", name="pool", pool=2),
                LayerSpec(type="flatten", name="flat"),
                LayerSpec(type="dense", name="out", units=3, activation="softmax")),
    )


def tiny_weights() -> dict[str, LayerWeights]:
    k = np.zeros((3, 3, 1, 2), dtype=np.float32)
    k[..., 0], k[..., 1] = 1.0, -1.0
    return {"conv": LayerWeights(k, np.zeros(2, np.float32)),
            "out": LayerWeights(np.ones((2, 3), np.float32), np.zeros(3, np.float32))}


def tiny_image() -> np.ndarray:
    x = np.zeros((1, 4, 4, 1), dtype=np.float32)
    x[0, 0, 0, 0] = x[0, 3, 3, 0] = 1.0
    return x


# Made-up SNN series over T = 4 steps for one image; SynOps are keyed by the
# layer that emits the spikes: conv -> pool with fan-out 1, pool -> out with fan-out 3.
SPIKES = {"conv": np.array([2, 1, 1, 5]), "pool": np.array([1, 1, 0, 9]), "out": np.array([0, 1, 1, 7])}
SYNOPS = {"conv": np.array([2, 1, 1, 5]), "pool": np.array([3, 3, 0, 27]), "out": np.zeros(4)}
STEP = 3


@pytest.fixture(scope="module")
def work():
    spec = tiny_spec()
    eff = ann_effective_ops(spec, tiny_weights(), tiny_image())
    return network_work(spec, STEP, 1, SYNOPS, SPIKES, eff)


def test_effective_ops_by_hand():
    eff = ann_effective_ops(tiny_spec(), tiny_weights(), tiny_image())
    # conv: pixel (0,0) lies only in output window (0,0), pixel (3,3) only in (1,1): 1 window x 2 filters each
    #   -> 2 + 2 = 4 MACs with a nonzero input (of 72)
    # pool: filter 0 gives 1 at (0,0) and (1,1) (window sums of one pixel), filter 1 gives -1 -> ReLU 0:
    #   2 nonzero inputs, each in one pooling window -> 2 (of 8)
    # out: pool gives [max(1,0,0,1), 0] = [1, 0]: 1 nonzero input x 3 units -> 3 (of 6)
    assert eff == {"conv": 4.0, "pool": 2.0, "out": 3.0}


def test_layer_work_by_hand(work):
    conv, pool, out = work.layers
    # conv: 16 inputs, 3*3*1*2 + 2 = 20 params, 2x2x2 = 8 neurons, 8 outputs x 9 real taps = 72 MACs
    assert (conv.inputs, conv.params, conv.neurons, conv.dense_ops, conv.effective_ops) == (16, 20, 8, 72, 4)
    # its input is analog: no SynOps, no spikes in; spikes out up to step 3: 2 + 1 + 1
    assert (conv.synops, conv.spikes_in, conv.spikes_out, conv.first) == (0, 0, 4, True)
    # pool: 8 inputs, 2 neurons, 2 outputs x 4 taps; SynOps in = conv's series to step 3: 2+1+1
    assert (pool.inputs, pool.params, pool.neurons, pool.dense_ops, pool.effective_ops) == (8, 0, 2, 8, 2)
    assert (pool.synops, pool.spikes_in, pool.spikes_out, pool.first) == (4, 4, 2, False)
    # out: 2 inputs, 2*3 + 3 = 9 params, 3 neurons, 6 MACs; SynOps in = 3+3+0, spikes in 1+1+0, out 0+1+1
    assert (out.inputs, out.params, out.neurons, out.dense_ops, out.effective_ops) == (2, 9, 3, 6, 3)
    assert (out.synops, out.spikes_in, out.spikes_out) == (6, 2, 2)
    # neuron updates: (8 + 3) neurons x 3 steps (the 2 max-pooling units have no membrane);
    # ANN activations: conv and dense outputs 8 + 3
    assert (conv.snn_neuron_updates, pool.snn_neuron_updates, out.snn_neuron_updates) == (24, 0, 9)
    assert work.snn_neuron_updates == 33
    assert work.ann_neuron_activations == 11
    assert work.input_macs_per_step == 72


def test_ann_accesses_by_hand(work):
    conv, pool, out = work.layers
    assert ann_accesses(conv) == AccessCounts(weight_reads=72, act_reads=72, act_writes=8)
    assert ann_accesses(pool) == AccessCounts(weight_reads=0, act_reads=8, act_writes=2)  # no weights in pooling
    assert ann_accesses(out) == AccessCounts(weight_reads=6, act_reads=6, act_writes=3)
    assert work.ann_accesses() == AccessCounts(weight_reads=78, act_reads=86, act_writes=13)
    # zero skipping: only the 4 + 2 + 3 taps with a nonzero input
    assert work.ann_accesses(zero_skipping=True) == AccessCounts(weight_reads=7, act_reads=9, act_writes=13)


def test_snn_accesses_by_hand(work):
    conv, pool, out = work.layers
    # first layer computed once: 72 MACs (72 weight + 72 pixel reads); 8 neurons x 3 steps = 24 updates,
    # each one membrane read + write, plus reading the stored current (24) and writing it once (8)
    assert snn_accesses(conv, "once") == AccessCounts(weight_reads=72, act_reads=72, membrane_reads=48,
                                                      membrane_writes=32, spike_writes=4)
    # every step: 3 x 72 MACs, no stored current
    assert snn_accesses(conv, "every-step") == AccessCounts(weight_reads=216, act_reads=216, membrane_reads=24,
                                                            membrane_writes=24, spike_writes=4)
    assert snn_accesses(conv, "excluded") == AccessCounts(membrane_reads=24, membrane_writes=24, spike_writes=4)
    # pool: a max pool has no membrane (its SynOps are gated, not integrated) and no weights:
    # only its 4 spikes read and 2 written
    assert snn_accesses(pool) == AccessCounts(spike_reads=4, spike_writes=2)
    # out: 6 SynOps read 6 weights; 6 + 3 x 3 = 15 membrane reads and writes
    assert snn_accesses(out) == AccessCounts(weight_reads=6, membrane_reads=15, membrane_writes=15, spike_reads=2,
                                             spike_writes=2)
    # zero skipping applies to the analog input too: 4 MACs once
    assert snn_accesses(conv, "once", zero_skipping=True).weight_reads == 4
    with pytest.raises(UsageError, match="first-layer policy"):
        snn_accesses(conv, "sometimes")


def hand_model(**kw) -> CostModel:
    # memory: <= 16 bytes 1, <= 64 bytes 2, beyond 10; 4 bytes per value, 1 bit per spike
    fields = dict(name="hand", mac=4.0, add=1.0, synop=1.0, neuron_update=2.0, neuron_activation=3.0,
                  accounting="access", first_layer="once", word_bits=32, sram=[[16, 1.0], [64, 2.0]], dram=10.0)
    return CostModel(**(fields | kw))


def test_costs_by_hand(work):
    # tensor sizes -> energy per access:
    #   conv: weights 20x4 = 80 B -> 10 (DRAM); inputs 16x4 = 64 B -> 2; state 8x4 = 32 B -> 2; spikes 2 B, 1 B -> 1
    #   pool: inputs 8x4 = 32 B -> 2; state 2x4 = 8 B -> 1; spikes -> 1
    #   out: weights 9x4 = 36 B -> 2; inputs 2x4 = 8 B -> 1; state 3x4 = 12 B -> 1; spikes -> 1
    b = hand_model().breakdown(work)
    # ANN. conv (first layer): 72 MACs x 4 = 288, weight reads 72 x 10, pixel reads 72 x 2 -> input layer 1152;
    #   8 writes x 2 = 16 memory; 8 activations x 3 = 24
    # pool: 8 taps x add 1 = 8; 8 reads x 2 + 2 writes x 1 = 18
    # out: 6 MACs x 4 = 24; 6 weight reads x 2 + 6 reads x 1 + 3 writes x 1 = 21; 3 activations x 3 = 9
    assert (b.ann.arithmetic, b.ann.memory, b.ann.neuron, b.ann.input_layer) == (32, 55, 33, 1152)
    assert b.ann.total == 1272
    # SNN. conv: input layer as the ANN's 1152 (once); membrane (48 + 32) x 2 + 4 spike writes x 1 = 164;
    #   24 updates x 2 = 48
    # pool (max pool, no membrane): 4 SynOps x add 1; 4 spike reads + 2 writes x 1 = 6; no updates
    # out: 6 SynOps x 1; 6 weight reads x 2 + (15 + 15) x 1 + 2 + 2 = 46; 9 updates x 2 = 18
    assert (b.snn.arithmetic, b.snn.memory, b.snn.neuron, b.snn.input_layer) == (10, 216, 66, 1152)
    assert b.factor == pytest.approx(1272 / 1444)
    # per layer: arithmetic vs memory
    assert [(l.name, l.ann.memory + l.ann.input_layer, l.snn.memory) for l in b.layers] == [
        ("conv", 16 + 1152, 164), ("pool", 18, 6), ("out", 21, 46)]


def test_zero_skipping_and_policies_by_hand(work):
    zs = hand_model(zero_skipping=True).breakdown(work)
    # ANN: conv 4 MACs: 16 + 40 + 8 = 64 input layer, 16 writes, 24 activations;
    #   pool 2 taps: 2 + (2 x 2 + 2); out 3 MACs: 12 + (3 x 2 + 3 x 1 + 3) + 9
    assert zs.ann.total == 64 + 16 + 24 + 2 + 6 + 12 + 12 + 9 == 145
    # SNN: first layer's 4 input MACs once: 64; everything else as before (164 + 48 + 10 + 70)
    assert zs.snn.total == 64 + 164 + 48 + 10 + 70 == 356
    excl = hand_model(first_layer="excluded").breakdown(work)
    # no input layer; conv membrane 24 + 24 -> 48 x 2 + 4 = 100
    assert excl.snn.input_layer == 0 and excl.snn.total == 100 + 48 + 10 + 70
    every = hand_model(first_layer="every-step").breakdown(work)
    assert every.snn.input_layer == 3 * 1152 and every.snn.total == 3456 + 100 + 48 + 10 + 70


def test_break_even_by_hand(work):
    m = hand_model()
    # ANN = 960 + 78 mac (72 + 6 MACs), SNN = 1156 + 72 mac (the first layer's 72 MACs once):
    # equal at mac = 196 / 6, i.e. 32.67 SynOp energies
    assert m.break_even_ratio(work) == pytest.approx(196 / 6)
    at = hand_model(mac=196 / 6).breakdown(work)
    assert at.factor == pytest.approx(1.0)
    # every step: the SNN pays 216 MACs, more than the ANN's 78: no ratio balances them
    assert hand_model(first_layer="every-step").break_even_ratio(work) is None


def test_factor_interval_exact(work):
    m = hand_model(ranges={"dram": [5.0, 20.0]})
    lo, hi = m.factor_interval(work)
    # DRAM prices only the conv weights, read 72 times on both sides:
    # ANN = 552 + 72 d, SNN = 724 + 72 d
    assert (lo, hi) == (pytest.approx(912 / 1084), pytest.approx(1992 / 2164))
    # two intervals at once against a brute-force grid (the grid's corners are the box's corners)
    m2 = hand_model(ranges={"dram": [5.0, 20.0], "mac": [1.0, 50.0], "synop": [0.5, 2.0]})
    lo2, hi2 = m2.factor_interval(work)
    grid = [hand_model(dram=d, mac=a, synop=s).breakdown(work).factor
            for d, a, s in itertools.product(np.linspace(5, 20, 7), np.linspace(1, 50, 7), np.linspace(0.5, 2, 7))]
    assert lo2 == pytest.approx(min(grid)) and hi2 == pytest.approx(max(grid))
    with pytest.raises(UsageError, match="ranges.volts"):
        hand_model(ranges={"volts": [1, 2]})
    with pytest.raises(UsageError, match="low <= high"):
        hand_model(ranges={"mac": [2, 1]})


def test_ops_models_unchanged(work):
    # the report's rule over this network: exact FLOPs = 2 x 78 synapses - 11 neurons + 11 biases = 156
    counts = count_network(tiny_spec())
    r14 = CostModel(name="r14", mac=14.0, add=1.0, synop=1.0, ann_convention="half-flops")
    b = r14.breakdown(work, counts)
    assert b.ann.total == 156 / 2 * 15 == r14.ann_cost(counts)
    assert b.snn.total == 10  # SynOps 4 + 6, nothing else
    assert b.factor == r14.factor(counts, 10)
    # report rules: F/2 x r + F/2 = S -> r = 2 x 10 / 156 - 1 < 0: cheaper at any ratio
    assert r14.break_even_ratio(work, counts) == pytest.approx(2 * 10 / 156 - 1)


def test_fair_presets_cite_every_number():
    models = registered()
    for name in ("fair-45nm-fp32", "fair-45nm-fp32-zs"):
        m = models[name]
        assert m.accounting == "access" and m.unit == "pJ" and "same-node" in m.comparison
        for f in ("mac", "add", "synop", "neuron_update", "neuron_activation", "sram", "dram"):
            assert "Fig. 1.1.9" in m.citations[f], (name, f)
        # Horowitz 45 nm: fp32 mult 3.7 + add 0.9; caches 8 KB 10, 32 KB 20, 1 MB 100 pJ; DRAM 1.3-2.6 nJ
        assert m.mac == pytest.approx(3.7 + 0.9) and (m.synop, m.sram) == (0.9, ((8192, 10), (32768, 20), (1048576, 100)))
        assert m.ranges["dram"] == (1300, 2600)
    assert models["fair-45nm-fp32-zs"].zero_skipping and not models["fair-45nm-fp32"].zero_skipping
    assert "cross-node" in models["loihi"].comparison
    assert "15 x MACs" in models["report-14x"].description


def test_iso_accuracy_step():
    err = [0.9, 0.4, 0.12, 0.11, 0.105, 0.10]
    assert iso_accuracy_step(err, ann_error=0.10, delta=0.01) == (4, True)  # 0.11 <= 0.10 + 0.01
    assert iso_accuracy_step(err, ann_error=0.10, delta=0.0) == (6, True)
    assert iso_accuracy_step(err, ann_error=0.05, delta=0.01) == (6, False)  # never within: last step
    assert cost_point_step(err, "settle", 0.01) == (4, True)  # 0.12 at step 3 is the last above 0.10 + 0.01
    assert cost_point_step(err, "iso-accuracy", ann_error=0.3, delta=0.01) == (3, True)
    with pytest.raises(UsageError, match="cost point"):
        cost_point_step(err, "halfway")
    with pytest.raises(UsageError, match="delta"):
        iso_accuracy_step(err, 0.1, -0.5)


# --- effective MACs on real images, against a brute force ------------------------------


def _brute_effective(x: np.ndarray, k: int, s: int, padding: str, filters: int) -> int:
    """Count (output position, filter, real tap) triples whose input is nonzero by looping
    over output windows (the core counts from the input side, via fan-out)."""
    n, h, w, c = x.shape
    if padding == "same":
        oh, ow = -(-h // s), -(-w // s)
        ph = max((oh - 1) * s + k - h, 0) // 2
        pw = max((ow - 1) * s + k - w, 0) // 2
    else:
        oh, ow, ph, pw = (h - k) // s + 1, (w - k) // s + 1, 0, 0
    total = 0
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for di in range(k):
                    for dj in range(k):
                        r, q = i * s - ph + di, j * s - pw + dj
                        if 0 <= r < h and 0 <= q < w:
                            total += int(np.count_nonzero(x[b, r, q, :]))
    return total * filters


def test_effective_ops_on_mnist_against_brute_force(data_dir):
    from effmodel.datasets import to_float
    from effmodel.forward import iter_layers
    from effmodel.pipeline import dataset_arrays

    _, arrays = dataset_arrays("mnist", data_dir)
    x = to_float(arrays.x_test[:6])
    spec = ArchitectureSpec(
        name="eff", dataset="mnist", input_shape=(28, 28, 1),
        layers=(LayerSpec(type="conv2d", name="c1", filters=3, kernel=5, stride=2, padding="same"),
                LayerSpec(type="conv2d", name="c2", filters=2, kernel=3, padding="valid"),
                LayerSpec(type="flatten", name="f"),
                LayerSpec(type="dense", name="d", units=4, activation="softmax")),
    )
    rng = np.random.default_rng(0)
    weights = {"c1": LayerWeights(rng.normal(size=(5, 5, 1, 3)).astype(np.float32), np.full(3, -0.5, np.float32)),
               "c2": LayerWeights(rng.normal(size=(3, 3, 3, 2)).astype(np.float32), np.zeros(2, np.float32)),
               "d": LayerWeights(rng.normal(size=(12 * 12 * 2, 4)).astype(np.float32), np.zeros(4, np.float32))}
    eff = ann_effective_ops(spec, weights, x, batch_size=4)  # two batches, one partial
    outs = {i: o for i, _, o in iter_layers(spec, weights, x)}
    assert eff["c1"] * 6 == _brute_effective(x, 5, 2, "same", 3)
    assert eff["c2"] * 6 == _brute_effective(outs[0], 3, 1, "valid", 2)
    assert eff["d"] * 6 == int(np.count_nonzero(outs[1])) * 4
    assert 0 < eff["c2"] < count_network(spec).layers[1].synapses  # ReLU zeros are really skipped


# --- end to end: a tiny converted network through Norse, stored and priced again ---------


@pytest.fixture(scope="module")
def tiny_run(data_dir, tmp_path_factory):
    from effmodel import plugins
    from effmodel.conversion import convert
    from effmodel.datasets import to_float
    from effmodel.forward import iter_layers
    from effmodel.pipeline import RunSettings, compute_item, dataset_arrays
    from effmodel.simulation import NormalisationSettings

    if "norse" not in plugins.get_simulators():
        pytest.skip("the norse simulator plugin is not installed")
    spec = ArchitectureSpec(
        name="fair-e2e", dataset="mnist", input_shape=(28, 28, 1),
        layers=(LayerSpec(type="conv2d", name="c1", filters=4, kernel=3, stride=2, padding="same"),
                LayerSpec(type="maxpool", name="p1", pool=2),
                LayerSpec(type="flatten", name="f"),
                LayerSpec(type="dense", name="out", units=10, activation="softmax")),
    )
    _, arrays = dataset_arrays("mnist", data_dir)
    rng = np.random.default_rng(3)
    conv = LayerWeights(rng.normal(0, 0.5, size=(3, 3, 1, 4)).astype(np.float32), np.zeros(4, np.float32))
    x = to_float(arrays.x_train[:1000])
    feats = [o for i, _, o in iter_layers(spec, {"c1": conv, "out": LayerWeights(np.zeros((196, 10), np.float32), None)}, x)][2]
    w, *_ = np.linalg.lstsq(feats, np.eye(10)[arrays.y_train[:1000]], rcond=None)  # a least-squares readout
    weights = {"c1": conv, "out": LayerWeights(w.astype(np.float32), np.zeros(10, np.float32))}
    network = convert(spec, weights, arrays, NormalisationSettings(num_images=200))
    out = tmp_path_factory.mktemp("fair")
    runs = {}
    for point in ("settle", "iso-accuracy"):
        settings = RunSettings(simulator="norse", output=out, data_dir=data_dir, num_test=40, duration=30, batch_size=20,
                               cost_model="fair-45nm-fp32", cost_point=point, delta=0.05, record_layers=False)
        runs[point] = compute_item(spec, settings, f"run-{point}", family="test", network=network)
    # a second-pass preset as the run's cost model: the pipeline prices through the same policies
    settings = RunSettings(simulator="norse", output=out, data_dir=data_dir, num_test=40, duration=30, batch_size=20,
                           cost_model="quant-45nm-lowbit-row-stationary", cost_point="settle", record_layers=False)
    runs["lowbit"] = compute_item(spec, settings, "run-lowbit", family="test", network=network)
    runs["network"] = network  # for tests that run it again under another preset
    return spec, runs


def test_run_stores_consistent_fair_columns(tiny_run):
    spec, runs = tiny_run
    item = runs["settle"]
    row, layers = item.row, {r["layer"]: r for r in item.layers}
    step = row["threshold_step"]
    # neuron updates: (14x14x4 conv + 10 out) neurons x the cost step (the max pool's units have no membrane)
    assert row["snn_neuron_updates"] == (784 + 10) * step
    assert row["ann_neuron_activations"] == 784 + 10
    assert row["snn_input_macs"] == count_network(spec).layers[0].synapses
    # the SynOps attributed to receiving layers add up to the simulator's own cumulative count at that step
    assert sum(r["snn_synops_in"] for r in layers.values()) == pytest.approx(row["synops_at_threshold"])
    assert layers["c1"]["snn_synops_in"] == 0 and layers["c1"]["first_layer"] == 1
    # zero skipping saves something: ReLU zeros and MNIST's black pixels
    assert 0 < row["ann_effective_macs"] < row["ann_synapses"]
    # the cost split adds up, the headline follows the fair model, the interval holds it
    ann = sum(row[f"ann_cost_{p}"] for p in ("arithmetic", "memory", "neuron", "input"))
    snn = sum(row[f"snn_cost_{p}"] for p in ("arithmetic", "memory", "neuron", "input"))
    assert row["total_costs"] == pytest.approx(ann) and row["snn_costs"] == pytest.approx(snn)
    assert row["factor"] == pytest.approx(ann / snn)
    assert row["factor_low"] <= row["factor"] <= row["factor_high"]
    assert row["snn_cost_memory"] > row["snn_cost_arithmetic"]  # memory dominates, as the literature says
    # stored layer rows are enough to price the result again under any preset
    from effmodel.accounting import work_from_layer_rows

    work = work_from_layer_rows(item.layers)
    models = registered()
    assert models["fair-45nm-fp32"].breakdown(work).factor == pytest.approx(row["factor"])
    assert models["fair-45nm-fp32-zs"].breakdown(work).ann.total < row["total_costs"]


def test_iso_accuracy_cost_point_end_to_end(tiny_run):
    _, runs = tiny_run
    settle, iso = runs["settle"], runs["iso-accuracy"]
    errors = np.array([t["error"] for t in iso.timesteps])
    ann_error = 1 - iso.row["ann_accuracy"]
    within = np.nonzero(errors <= ann_error + 0.05 + 1e-12)[0]
    expected = int(within[0]) + 1 if within.size else len(errors)
    assert iso.row["threshold_step"] == expected
    assert iso.row["cost_point"] == "iso-accuracy" and iso.row["cost_point_reached"] == int(within.size > 0)
    assert iso.row["snn_accuracy_at_cost_point"] == pytest.approx(1 - errors[expected - 1])
    assert settle.row["cost_point"] == "settle"
    assert iso.row["item_key"] != settle.row["item_key"]


def test_cost_models_command_cites_every_fair_figure(run_effmodel):
    out = run_effmodel("cost-models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("fair-45nm-fp32 "))
    block = lines[start:start + 10]
    for field in ("mac = 4.6", "add = 0.9", "synop = 0.9", "neuron_update = 1.8", "neuron_activation = 1.8",
                  "sram = 8 KB: 10, 32 KB: 20, 1024 KB: 100", "dram = 1950 [1300, 2600]"):
        assert any(field in l and "Fig. 1.1.9" in l for l in block), field
    assert any("cross-node" in l for l in lines)
    assert not any(l.startswith("spinnaker2") for l in lines)


def test_layer_split_by_hand(work):
    b = hand_model().breakdown(work)
    # conv ANN: arithmetic 288 MACs + 24 activations, memory 720 + 144 reads + 16 writes;
    # SNN: 288 input MACs + 48 updates, memory 864 input reads + 164
    assert b.layers[0].ann_split == (312, 880) and b.layers[0].snn_split == (336, 1028)
    assert sum(sum(l.ann_split) for l in b.layers) == b.ann.total
    assert sum(sum(l.snn_split) for l in b.layers) == b.snn.total


def test_report_prices_stored_results_again(tiny_run, tmp_path):
    from effmodel.report import build, fair_frame, load_inputs
    from effmodel.store import Store

    _, runs = tiny_run
    item = runs["settle"]
    with Store(tmp_path) as store:
        store.start_run("test", {})
        store.write_result(item.row, item.timesteps, item.layers)
        store.export_csv()
    (r,) = fair_frame(load_inputs(tmp_path)).to_dict("records")
    assert r["fair"] == pytest.approx(item.row["factor"])  # the run used the fair preset
    assert r["fair_lo"] <= r["fair"] <= r["fair_hi"]
    assert r["fair_be"] == pytest.approx(item.row["break_even_ratio"])
    # the report's rule from the same per-layer work: exact FLOPs x 7.5 / SynOps at the cost point
    assert r["f14"] == pytest.approx(item.row["ann_flops"] * 7.5 / item.row["synops_at_threshold"])
    csv_only = tmp_path / "csv"
    csv_only.mkdir()
    for name in ("results.csv", "timesteps.csv", "layers.csv"):
        (csv_only / name).write_text((tmp_path / name).read_text())
    (r_csv,) = fair_frame(load_inputs(csv_only)).to_dict("records")
    assert r_csv["fair"] == pytest.approx(item.row["factor"])
    doc = build(tmp_path)
    titles = [s.title for s in doc.sections]
    assert "Fair accounting: the same rules for the ANN and the SNN" in titles
    assert any("Fair accounting: SNN cheaper in" in b.text for b in doc.sections[0].blocks if hasattr(b, "text"))


def test_verdicts_by_cost_fit_each_factor_column_separately():
    from effmodel import stats

    rng = np.random.default_rng(7)
    n = 150
    conv, dense = rng.integers(1, 7, n), rng.integers(1, 4, n)
    depth, logp = conv + dense, rng.uniform(9, 16, n)
    noise = rng.normal(0, 0.3, n)
    df = pd.DataFrame({"model": [f"m{i}" for i in range(n)], "dataset": "mnist", "simulator": "fake", "depth": depth,
                       "conv_layers": conv, "dense_layers": dense, "params": np.round(np.exp(logp)),
                       "mean_spike_rate": 0.05,
                       "f_depth": np.exp(1 - 0.45 * depth + noise),  # only depth moves this factor
                       "f_size": np.exp(1 + 0.4 * logp + noise)})  # only size moves this one
    v = stats.verdicts_by_cost(df, ["f_depth", "f_size", "missing"])
    assert v["f_depth"]["fake"].startswith("depth dominates")
    assert v["f_size"]["fake"].startswith("size dominates")
    assert v["missing"] == {}
    assert stats.verdicts_by_cost(df.head(3), ["f_depth"])["f_depth"]["fake"].startswith("not fitted")


# --- a hand cost model whose energies all differ (issue 22) ------------------------------
# With add = synop = 1 a break-even multiplied by synop instead of divided, pooling priced at
# synop instead of add, or effective MACs that count pooling taps all pass; here they cannot.


def distinct_model(**kw) -> CostModel:
    return hand_model(**({"mac": 4.0, "add": 0.25, "synop": 0.5} | kw))


def test_distinct_energies_pooling_at_add(work):
    b = distinct_model().breakdown(work)
    conv, pool, out = b.layers
    # ANN pool: 8 taps x add 0.25 = 2 (at synop it would be 4); out: 6 MACs x 4 = 24
    assert pool.ann.arithmetic == 2 and out.ann.arithmetic == 24
    # SNN pool (max pool, no membrane): 4 SynOps x add 0.25 = 1; out: 6 SynOps x synop 0.5 = 3
    assert pool.snn.arithmetic == 1 and out.snn.arithmetic == 3
    # totals: ANN = 78 x 4 + 954 = 1266 (memory and activations as in test_costs_by_hand:
    # 864 + 16 + 24 + 18 + 21 + 9 = 952, pooling 2); SNN = 72 x 4 + 1150 = 1438
    # (864 + 164 + 48 + 6 + 46 + 18 = 1146, SynOps 1 + 3)
    assert b.ann.total == 78 * 4 + 954 and b.snn.total == 72 * 4 + 1150


def test_distinct_energies_break_even_by_hand(work):
    m = distinct_model()
    # ANN = 954 + 78 mac, SNN = 1150 + 72 mac: equal at mac = 196 / 6 = 32.67 pJ, which is
    # 32.67 / synop 0.5 = 65.3 SynOp energies
    ratio = m.break_even_ratio(work)
    assert ratio == pytest.approx(196 / 6 / 0.5)
    assert distinct_model(mac=ratio * 0.5).breakdown(work).factor == pytest.approx(1.0)
    # the report's rule: F/2 x mac + F/2 x add = S x synop with F = 156 exact FLOPs, S = 10 SynOps:
    # mac = (10 x 0.5 - 78 x 0.25) / 78, ratio = mac / 0.5
    counts = count_network(tiny_spec())
    r = CostModel(name="r", mac=14.0, add=0.25, synop=0.5, ann_convention="half-flops")
    be = r.break_even_ratio(work, counts)
    assert be == pytest.approx((10 * 0.5 - 78 * 0.25) / 78 / 0.5)
    assert CostModel(name="r", mac=be * 0.5, add=0.25, synop=0.5,
                     ann_convention="half-flops").breakdown(work, counts).factor == pytest.approx(1.0)


def test_effective_macs_column_leaves_out_pooling_taps(work):
    from effmodel.accounting import result_columns

    row = result_columns(work, distinct_model(), count_network(tiny_spec()), cost_point="settle", delta=0.0,
                         reached=True, accuracy_at_step=1.0)
    # conv 4 + out 3 nonzero-input MACs; the pool's 2 nonzero taps are comparisons, not MACs
    assert row["ann_effective_macs"] == 7
    # the max pool's units are not neurons: (8 + 3) x 3 updates
    assert row["snn_neuron_updates"] == 33


def test_poisson_input_priced_as_input_synops():
    # the tiny network with Poisson input: 2 input spikes up to step 3 (series [1, 1, 0, 5]) that
    # deliver 18 SynOps to the conv layer (made-up series [9, 9, 0, 45])
    spec = tiny_spec()
    w = network_work(spec, STEP, 1, SYNOPS | {"input": np.array([9, 9, 0, 45])},
                     SPIKES | {"input": np.array([1, 1, 0, 5])})
    conv = w.layers[0]
    assert (conv.synops, conv.spikes_in, conv.spiking_input) == (18, 2, True)
    assert conv.snn_input_macs("once") == 0  # no analog MACs: the input is events
    b = distinct_model().breakdown(w).layers[0]
    # SNN conv: 18 SynOps x 0.5 = 9 and their 18 weight reads x 10 (80 B of weights: DRAM) = 180,
    # both in the input layer; membrane: (18 SynOps + 24 updates) reads and writes x 2 (32 B) = 168,
    # 2 input spikes read x 1 (2 B bitmap), 4 spikes written x 1: memory 174; no stored current
    assert b.snn.input_layer == 9 + 180
    assert b.snn.memory == 168 + 2 + 4
    assert b.snn.neuron == 24 * 2
    # the ANN is unchanged: 72 MACs against them
    assert b.ann.input_layer == 72 * 4 + 864


def test_layer_rows_as_text_rebuild_the_same_work(work):
    from effmodel.accounting import layer_columns, work_from_layer_rows

    typed = [v | {"layer": k, "type": l.type, "neurons": l.neurons}
             for (k, v), l in zip(layer_columns(work).items(), work.layers)]
    # the csv module gives every value as text: "0" must not read as a first layer
    text = [{k: str(v) for k, v in r.items()} for r in typed]
    assert work_from_layer_rows(text, "tiny") == work_from_layer_rows(typed, "tiny")
    assert [l.first for l in work_from_layer_rows(text, "tiny").layers] == [True, False, False]
    assert work_from_layer_rows([text[0] | {"ann_effective_ops": ""}] + text[1:]) is None  # an empty cell: not stored


def test_run_under_a_second_pass_preset(tiny_run):
    from effmodel.accounting import work_from_layer_rows

    _, runs = tiny_run
    item = runs["lowbit"]
    row = item.row
    work = work_from_layer_rows(item.layers)
    model = registered()["quant-45nm-lowbit-row-stationary"]
    # the stored headline is the preset's own total, priced again from the stored layer rows
    assert row["factor"] == pytest.approx(model.breakdown(work).factor)
    # the low-bit ANN took its activation width from the cost step: ceil(log2(step + 1)) bits
    bits = model.at_steps(row["threshold_step"]).act_bits
    assert 2 ** (bits - 1) <= row["threshold_step"] < 2 ** bits
    # row-stationary: every tap's partial sum is read and written in a register file
    assert row["ann_psum_reads"] == row["ann_psum_writes"] == pytest.approx(
        sum(r["ann_dense_ops"] for r in item.layers))
    # address events: one routing look-up per arriving spike
    assert row["snn_route_reads"] == pytest.approx(sum(r["snn_spikes_in"] for r in item.layers))
    be = row["break_even_synops_per_synapse"]
    assert be is None or be > 0


def test_cost_models_command_lists_the_second_pass_presets(run_effmodel):
    out = run_effmodel("cost-models")
    assert out.returncode == 0, out.stderr
    heads = {l.split()[0]: l for l in out.stdout.splitlines() if l and not l.startswith(" ")}
    for name, source in (("dataflow-45nm-fp32-no-reuse", "Horowitz"), ("dataflow-45nm-fp32-ideal-reuse", "Dampfhoffer"),
                         ("dataflow-45nm-fp32-row-stationary", "Eyeriss"), ("quant-45nm-int8-row-stationary", "Horowitz"),
                         ("quant-45nm-lowbit-row-stationary", "arXiv:2409.08290")):
        assert source in heads[name], name
    assert "8-bit int mult 0.2 pJ" in out.stdout


def test_report_shows_the_dataflow_range_and_both_break_evens(tiny_run, data_dir, tmp_path):
    """The dataflow section reprices a stored result under every registered
    'dataflow' preset; its row-stationary cell equals a fresh run priced by
    that preset (another code path: the run's own result columns)."""
    from effmodel.accounting.reprice import presets_by_role
    from effmodel.analysis.report import build
    from effmodel.pipeline import RunSettings, compute_item
    from effmodel.store import Store

    _, runs = tiny_run
    network, item = runs["network"], runs["settle"]
    preset = "dataflow-45nm-fp32-row-stationary"
    settings = RunSettings(simulator="norse", output=tmp_path / "fresh", data_dir=data_dir, num_test=40, duration=30,
                           batch_size=20, cost_model=preset, record_layers=False)
    fresh = compute_item(network.spec, settings, "fresh", family="test", network=network)
    with Store(tmp_path) as store:
        store.start_run("test", {})
        store.write_result(item.row, item.timesteps, item.layers)
    doc = build(tmp_path)
    (sec,) = [s for s in doc.sections if s.title == "Fair accounting across ANN dataflows"]
    table = next(b for b in sec.blocks if hasattr(b, "head") and "range across dataflows" in b.head)
    names = [m.name for m in presets_by_role()["dataflow"]]
    assert table.head[2:2 + len(names)] == names and len(names) == 3
    (row,) = table.rows
    cell = dict(zip(table.head, row))
    assert float(cell[preset].split()[0]) == pytest.approx(fresh.row["factor"], rel=5e-3)  # printed to 3 digits
    low, high = (float(v) for v in cell["range across dataflows"].split(" - "))
    for name in names:
        assert low * (1 - 5e-3) <= float(cell[name].split()[0]) <= high * (1 + 5e-3)
    assert float(cell["break-even MAC:SynOp"]) == pytest.approx(fresh.row["break_even_ratio"], rel=5e-3)
    be = fresh.row.get("break_even_synops_per_synapse")
    assert cell["break-even SynOps/synapse"] == ("-" if be is None else f"{be:.2g}")
