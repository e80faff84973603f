"""Second pass of fair accounting (issue 22): ANN dataflows, the continuous
memory curve, access widths, the global on-chip capacity, address events,
and the monotonicity of the factor in the ANN's reuse, on the tiny network
of test_fair_accounting worked out by hand.

The tiny network: a 4x4x1 input, conv 3x3 'valid' with 2 filters (16 inputs,
20 params, 8 neurons, 72 taps), max pooling 2 (8 inputs, 2 units, 8 taps),
flatten, dense 3 (2 inputs, 9 params, 3 neurons, 6 taps).  Made-up SNN series
(T = 4), cost point step 3; without measured effective MACs (dense only).
Hand memory: <= 16 bytes 1, <= 64 bytes 2, beyond 10 (DRAM); 32-bit values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from effmodel.accounting import AccessCounts, CostModel, MemoryModel, Storage, network_work
from effmodel.accounting.access import RowStationary, ann_accesses
from effmodel.errors import UsageError
from effmodel.specs import ArchitectureSpec, LayerSpec

SPIKES = {"conv": np.array([2, 1, 1, 5]), "pool": np.array([1, 1, 0, 9]), "out": np.array([0, 1, 1, 7])}
SYNOPS = {"conv": np.array([2, 1, 1, 5]), "pool": np.array([3, 3, 0, 27]), "out": np.zeros(4)}


def tiny_spec() -> ArchitectureSpec:
    """The hand-worked network of tests/test_fair_accounting.py (conv 3x3 -> max pool 2 -> dense 3 on 4x4x1)."""
    from tests.test_fair_accounting import tiny_spec as hand_worked

    return hand_worked()


@pytest.fixture(scope="module")
def work():
    return network_work(tiny_spec(), 3, 1, SYNOPS, SPIKES)


def hand_model(**kw) -> CostModel:
    fields = dict(name="hand", mac=4.0, add=1.0, synop=1.0, neuron_update=2.0, neuron_activation=3.0,
                  accounting="access", first_layer="once", word_bits=32, sram=[[16, 1.0], [64, 2.0]], dram=10.0)
    return CostModel(**(fields | kw))


# --- ANN dataflows ----------------------------------------------------------------------


def test_ideal_reuse_by_hand(work):
    m = hand_model(dataflow="ideal-reuse")
    conv, pool, out = work.layers
    # every parameter and input once: conv 20 params, 16 pixels; pool 8 inputs; out 2 inputs and its
    # parameters at most as often as its 6 taps use weights (no-reuse reads 6: 6, not 9)
    assert ann_accesses(conv, dataflow=m.dataflow_policy) == AccessCounts(weight_reads=20, act_reads=16, act_writes=8)
    assert ann_accesses(pool, dataflow=m.dataflow_policy) == AccessCounts(act_reads=8, act_writes=2)
    assert ann_accesses(out, dataflow=m.dataflow_policy) == AccessCounts(weight_reads=6, act_reads=2, act_writes=3)
    b = m.breakdown(work)
    # conv: 72 MACs x 4 + 20 weight reads x 10 (80 B: DRAM) + 16 pixel reads x 2 (64 B) = 520 input layer;
    #   8 writes x 2 (32 B) = 16; pool: 8 x 2 (32 B) + 2 x 1 (8 B) = 18; out: 6 x 2 (36 B) + 2 x 1 + 3 x 1 = 17
    assert (b.ann.input_layer, b.ann.memory) == (520, 16 + 18 + 17)
    # arithmetic: pool 8 taps x add 1, out 6 MACs x 4; activations (8 + 3) x 3
    assert (b.ann.arithmetic, b.ann.neuron) == (8 + 24, 33)
    assert b.ann.total == 636
    # the SNN does not depend on the ANN's dataflow (1444 as in test_costs_by_hand)
    assert b.snn.total == hand_model().breakdown(work).snn.total == 1444
    assert b.factor == pytest.approx(636 / 1444)


def test_ideal_reuse_zero_skipping_by_hand():
    # measured nonzero-input taps: conv 4 of 72, pool 2 of 8, out 3 of 6
    w = network_work(tiny_spec(), 3, 1, SYNOPS, SPIKES, {"conv": 4.0, "pool": 2.0, "out": 3.0})
    ideal = hand_model(dataflow="ideal-reuse", zero_skipping=True).dataflow_policy
    conv, pool, out = (ann_accesses(l, True, dataflow=ideal) for l in w.layers)
    # inputs read in proportion to the taps that use them: 16 x 4/72 pixels, 8 x 2/8, 2 x 3/6;
    # parameters at most once and at most once per tap: min(20, 4), min(9, 3)
    assert (conv.act_reads, conv.weight_reads) == (pytest.approx(16 * 4 / 72), 4)
    assert (pool.act_reads, out.act_reads, out.weight_reads) == (2, 1, 3)


def test_row_stationary_by_hand(work):
    # 2 PEs with 16-byte register files (8 bytes of weights each), a 64-byte global buffer
    m = hand_model(dataflow="row-stationary", pe_count=2, rf_bytes=16, glb_bytes=64)
    rs = m.dataflow_policy
    assert isinstance(rs, RowStationary) and (rs.pe_count, rs.rf_bytes, rs.glb_bytes) == (2, 16, 64)
    conv, pool, out = work.layers
    # conv: 80 B of weights in 16-B tiles -> 5 passes; out: 36 B -> 3; pool has no weights -> 1
    assert [rs.weight_tiles(l, m.storage) for l in work.layers] == [5, 1, 3]
    # conv: per MAC an RF read of weight and pixel, an RF read and write of the partial sum (72 each);
    # the 20 weights read into the array once, the 16 pixels streamed 5 times; 8 outputs written
    assert ann_accesses(conv, dataflow=rs) == AccessCounts(weight_reads=72 + 20, act_reads=72 + 80, act_writes=8,
                                                           psum_reads=72, psum_writes=72)
    b = m.breakdown(work)
    layers = {l.name: l for l in b.layers}
    # conv: RF 4 x 72 x 1 = 288; inputs + outputs (64 + 32 B) exceed the 64-B buffer, so the pixels come
    #   from their own 64-B memory (2): 80 x 2 = 160; weights 20 x 10 = 200; MACs 288 -> input layer 936;
    #   8 writes x 2 = 16
    assert (layers["conv"].ann.input_layer, layers["conv"].ann.memory) == (936, 16)
    # pool: RF 3 x 8 x 1 = 24 (no weight); 32 + 8 B fit the buffer (64 B -> 2): 8 reads + 2 writes x 2 = 20
    assert layers["pool"].ann.memory == 44
    # out: RF 4 x 6 = 24; 8 + 12 B fit the buffer: 2 inputs x 3 passes x 2 = 12, 3 writes x 2 = 6;
    #   9 weights from their 36-B memory x 2 = 18
    assert layers["out"].ann.memory == 60
    assert b.ann.total == 936 + 16 + 44 + 8 + 60 + 24 + 33 == 1121


def test_unknown_policies_name_the_model():
    with pytest.raises(UsageError, match="'bad'.*dataflow must be one of no-reuse"):
        hand_model(name="bad", dataflow="weight-stationary")
    with pytest.raises(UsageError, match="memory_curve"):
        hand_model(memory_curve="cubic")
    with pytest.raises(UsageError, match="spike_events"):
        hand_model(spike_events="morse")
    with pytest.raises(UsageError, match="'hand'.*row-stationary needs pe_count, rf_bytes and glb_bytes above 0"):
        hand_model(dataflow="row-stationary", rf_bytes=0)
    with pytest.raises(UsageError, match="access_bits"):
        hand_model(access_bits=0)


def _mid_work(rate: float):
    """A mid-size network with made-up activity scaled by ``rate``."""
    spec = ArchitectureSpec(
        name="mid", dataset="mnist", input_shape=(12, 12, 1),
        layers=(LayerSpec(type="conv2d", name="c1", filters=8, kernel=3, padding="same"),
                LayerSpec(type="maxpool", name="p1", pool=2),
                LayerSpec(type="conv2d", name="c2", filters=16, kernel=3),
                LayerSpec(type="flatten", name="f"),
                LayerSpec(type="dense", name="d1", units=32),
                LayerSpec(type="dense", name="out", units=10, activation="softmax")),
    )
    rng = np.random.default_rng(int(rate * 1000))
    names = ["c1", "p1", "c2", "d1", "out"]
    spikes = {n: rng.integers(0, 200, 8) * rate for n in names}
    synops = {n: spikes[n] * rng.integers(1, 30) for n in names}
    eff = {"c1": 500.0, "p1": 300.0, "c2": 4000.0, "d1": 900.0, "out": 100.0}
    return network_work(spec, 6, 1, synops, spikes, eff)


@pytest.mark.parametrize("rate", [0.01, 0.3, 3.0, 30.0])
@pytest.mark.parametrize("base", [
    dict(),  # the first fair presets' rules
    dict(memory_curve="continuous", charge_width=True, spike_events="address", membrane_buffer="network",
         on_chip_bytes=20000.0, zero_skipping=True),
    dict(sram=[[8192, 10.0], [32768, 20.0], [1048576, 100.0]], dram=1950.0, memory_curve="continuous",
         charge_width=True, weight_bits=8, act_bits=8, membrane_bits=16, mac=0.23, add=0.03, synop=0.06),
])
def test_more_reuse_never_helps_the_snn(work, rate, base):
    for w in (work, _mid_work(rate)):
        f = {d: hand_model(**(base | {"dataflow": d})).breakdown(w) for d in ("no-reuse", "row-stationary",
                                                                              "ideal-reuse")}
        # the SNN is priced alike under every ANN dataflow ...
        assert f["no-reuse"].snn.total == f["ideal-reuse"].snn.total == f["row-stationary"].snn.total
        # ... so the factor can only fall as the ANN gets more reuse: ideal <= row-stationary, ideal <= none
        assert f["ideal-reuse"].factor <= f["row-stationary"].factor * (1 + 1e-12)
        assert f["ideal-reuse"].factor <= f["no-reuse"].factor * (1 + 1e-12)


# --- memory: the continuous curve, widths, the global capacity ---------------------------

HOROWITZ = ((8192.0, 10.0), (32768.0, 20.0), (1048576.0, 100.0))


def test_continuous_curve_passes_through_cited_points():
    mem = MemoryModel(points=HOROWITZ, dram=1950.0, curve="continuous")
    for c, e in HOROWITZ:  # Horowitz 2014, Fig. 1.1.9: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ
        assert mem.per_access(c) == pytest.approx(e)
        assert mem.per_access(c * (1 - 1e-9)) == pytest.approx(e) == mem.per_access(c * (1 + 1e-9)) or c == HOROWITZ[-1][0]
    # straight in log-log: the geometric middle of 8 and 32 KB costs the geometric mean of 10 and 20 pJ
    assert mem.per_access(16384) == pytest.approx(math.sqrt(10 * 20))
    # below 8 KB the first segment's slope continues: E ~ C^0.5, so 2 KB costs 10 / 2
    assert mem.per_access(2048) == pytest.approx(5.0)
    # beyond the largest cited memory: DRAM
    assert mem.per_access(1048577) == 1950
    # the step table of the first fair presets jumps instead
    steps = MemoryModel(points=HOROWITZ, dram=1950.0)
    assert (steps.per_access(8193), steps.per_access(16384), steps.per_access(2048)) == (20, 20, 10)


def test_access_width_is_charged_when_asked():
    wide = MemoryModel(points=HOROWITZ, dram=1950.0, curve="continuous", charge_width=True)
    # Horowitz quotes 64-bit accesses: a 32-bit word is half of one, a 1-bit spike 1/64, an 8-bit weight 1/8
    assert (wide.energy(8192, 32), wide.energy(8192, 1), wide.energy(8192, 8)) == (5.0, 10 / 64, 10 / 8)
    assert wide.energy(math.inf, 32) == 975.0
    # without it every access costs a whole one (the first fair presets)
    assert MemoryModel(points=HOROWITZ, dram=1950.0).energy(8192, 1) == 10.0


def test_place_spills_what_does_not_fit():
    s = Storage(on_chip_bytes=45.0)
    # smallest first: 10 and 20 fit in 45 bytes, leaving 15: 30 spills although it alone would fit
    assert s.place({"c": 30.0, "a": 10.0, "b": 20.0}) == {"a": 10.0, "b": 20.0, "c": math.inf}
    assert Storage().place({"c": 5e9}) == {"c": 5e9}  # no limit


def test_snn_membranes_share_a_resident_buffer(work):
    conv, pool, out = work.layers
    # every potential stays resident for all T steps: conv 8 + out 3 (the max pool has none) + the
    # stored first-layer current 8 = 19 values x 4 B = 76 B
    m = hand_model(membrane_buffer="network", on_chip_bytes=100.0, sram=[[16, 1.0], [64, 2.0], [128, 3.0]])
    assert m.storage.membrane_bytes(work, m.first_layer_policy) == 76
    stores = {a.kind: a.store_bytes for a in m.snn_layer_accesses(out, work)}
    # 24 B left on chip for out's own tensors: its spike bitmaps (2/8 and 3/8 B) fit, its 36 B of weights spill
    assert (stores["membrane_reads"], stores["spike_reads"], stores["spike_writes"]) == (76, 0.25, 0.375)
    assert stores["weight_reads"] == math.inf
    # out's SNN memory: 6 weight reads x 10 + (15 + 15) membrane accesses x 3 (76 B) + 2 + 2 spikes x 1
    assert m.breakdown(work).layers[2].snn.memory == 60 + 90 + 4
    # with 50 B on chip the potentials do not fit: every membrane access goes to DRAM, the weights fit
    small = hand_model(membrane_buffer="network", on_chip_bytes=50.0, sram=[[16, 1.0], [64, 2.0], [128, 3.0]])
    stores = {a.kind: a.store_bytes for a in small.snn_layer_accesses(out, work)}
    assert (stores["membrane_reads"], stores["weight_reads"]) == (math.inf, 36)


def test_address_events_by_hand(work):
    conv, pool, out = work.layers
    m = hand_model(spike_events="address", charge_width=True)
    acc = {(a.kind): a for a in m.snn_layer_accesses(pool, work)}
    # 4 spikes arrive from conv's 8 neurons: 3-bit addresses, each read once and looked up once in a
    # routing table of one 1-bit entry per source (the pool has no weights: ceil(log2 2) = 1 bit)
    assert (acc["spike_reads"].count, acc["spike_reads"].bits) == (4, 3)
    assert (acc["route_reads"].count, acc["route_reads"].bits, acc["route_reads"].store_bytes) == (4, 1, 1.0)
    # the pool's 2 spikes leave as 1-bit addresses (2 units) in a 2 x 1 / 8 B queue
    assert (acc["spike_writes"].count, acc["spike_writes"].bits, acc["spike_writes"].store_bytes) == (2, 1, 0.25)
    # energy, 64-bit quotes charged by width (queue 3 B -> 1): 4 x 3/64 + 4 x 1/64 + 2 x 1/64
    assert m.breakdown(work).layers[1].snn.memory == pytest.approx((12 + 4 + 2) / 64)
    # out: 2 spikes from the pool's 2 units (1 bit), looked up in a table of 4-bit entries (9 weights)
    acc = {a.kind: a for a in m.snn_layer_accesses(out, work)}
    assert (acc["route_reads"].count, acc["route_reads"].bits) == (2, 4)


# --- break-even in SynOps per synapse, low-bit ANN, repricing by role ------------------------


def test_break_even_in_synops_per_synapse_by_hand(work):
    m = hand_model(neuron_update=0.0, first_layer="excluded")
    # ANN = 1272 (test_costs_by_hand). SNN without a spike: conv's 24 updates read and write its
    # 32-B membrane (48 x 2 = 96), out's 9 (18 x 1): 114. At the measured activity 162 (conv 100,
    # pool 10, out 52), so each unit of activity adds 48: 114 + 48 s = 1272 at s = 24.125.
    # The network has 10 SynOps on 72 + 6 = 78 conv/dense synapses: 24.125 x 10 / 78 per synapse
    assert m.break_even_synops_per_synapse(work) == pytest.approx(24.125 * 10 / 78)
    assert m.breakdown(work.scaled_activity(24.125)).factor == pytest.approx(1.0)
    # with neuron updates and the first layer charged, the SNN is dearer even without a spike: none
    assert hand_model().break_even_synops_per_synapse(work) is None


def test_low_bit_ann_takes_its_bits_from_the_steps(work):
    m = hand_model(mac=0.23, add=0.03, ann_act_bits_from_steps=True)
    # T = 3 steps: ceil(log2 4) = 2-bit activations; the 8-bit mult 0.2 pJ x 2/8 + the add 0.03
    at3 = m.at_steps(3)
    assert (at3.act_bits, at3.mac) == (2, pytest.approx(0.2 * 2 / 8 + 0.03))
    assert (m.at_steps(100).act_bits, m.at_steps(100).mac) == (7, pytest.approx(0.2 * 7 / 8 + 0.03))
    assert m.breakdown(work).ann.total == at3.breakdown(work).ann.total
    # 2-bit activations: conv's 16 pixels take 4 B
    assert {a.kind: a.store_bytes for a in at3.ann_layer_accesses(work.layers[0])}["act_reads"] == 4


def test_presets_by_role_takes_third_party_models(work):
    from effmodel.accounting.reprice import counted_rows, dataflow_range, presets_by_role, reprice

    mine = hand_model(name="my-dataflow", dataflow="ideal-reuse", report_role="dataflow", counts="c", leaves_out="l")
    models = {"none": hand_model(name="none", report_role="dataflow"), "my-dataflow": mine,
              "quiet": hand_model(name="quiet")}
    roles = presets_by_role(models)
    assert [m.name for m in roles["dataflow"]] == ["none", "my-dataflow"] and "quiet" not in str(roles)
    lo, hi, per = dataflow_range(work, models=roles["dataflow"])
    # no ranges: each interval is its factor; 636 / 1444 (ideal) and 1272 / 1444 (no reuse)
    assert (lo, hi) == (pytest.approx(636 / 1444), pytest.approx(1272 / 1444))
    assert per["my-dataflow"] == reprice(mine, work)
    assert counted_rows(models) == [("my-dataflow", "dataflow", "c", "l")]


def test_registry_roles_cover_the_report():
    from effmodel.accounting.reprice import preset_for, presets_by_role

    roles = presets_by_role()
    assert preset_for("headline").name == "report-14x" and preset_for("fair").name == "fair-45nm-fp32"
    assert {m.dataflow for m in roles["dataflow"]} == {"no-reuse", "ideal-reuse", "row-stationary"}
    assert {m.name for m in roles["quantised"]} >= {"quant-45nm-int8-row-stationary"}


def test_modelling_range_spans_the_choices(work):
    from effmodel.accounting.reprice import modelling_range

    m = hand_model(ranges={"dram": [5.0, 20.0]})
    lo, hi, per = modelling_range(m, work, choices={"dataflow": ("no-reuse", "ideal-reuse")})
    # only the dataflow varies: DRAM prices the conv weights, read 72 times by the no-reuse ANN and 20 times
    # by the ideal-reuse one, 72 times by the SNN (test_factor_interval_exact):
    # no-reuse  (552 + 72 d) / (724 + 72 d): 912 / 1084 at d = 5 ... 1992 / 2164 at d = 20
    # ideal     (636 - 200 + 20 d) / (724 + 72 d): 536 / 1084 at d = 5 ... 836 / 2164 at d = 20
    assert set(per) == {("no-reuse",), ("ideal-reuse",)}
    assert (lo, hi) == (pytest.approx(836 / 2164), pytest.approx(1992 / 2164))
    # the default choices (3 dataflows x 2 curves x 2 widths) include the model itself
    lo3, hi3, per3 = modelling_range(m, work)
    assert len(per3) == 12 and per3[("no-reuse", "steps", False)].factor == m.breakdown(work).factor
    assert lo3 <= lo and hi3 >= hi


def test_factor_table_from_csv_exports(work, tmp_path, capsys):
    import csv

    from effmodel.accounting import layer_columns
    from effmodel.accounting.reprice import factor_table, main, markdown_table

    rows = [v | {"run_id": "r1", "model": "tiny", "simulator": "sim", "layer": k, "type": l.type, "neurons": l.neurons}
            for (k, v), l in zip(layer_columns(work).items(), work.layers)]
    with (tmp_path / "layers.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "results.csv").write_text("run_id,model,simulator,spec_json\nr1,tiny,sim,\n")
    with (tmp_path / "results.csv").open() as f:
        results = list(csv.DictReader(f))
    with (tmp_path / "layers.csv").open() as f:
        layers = list(csv.DictReader(f))
    models = {"h": hand_model(name="h", report_role="fair"), "q": hand_model(name="q")}
    (row,) = factor_table(results, layers, models)
    # the hand model's factor on the tiny network: 1272 / 1444 (test_costs_by_hand); no role, no column
    assert row["h"].factor == pytest.approx(1272 / 1444) and "q" not in row and row["step"] == 3
    assert "| tiny | sim | 3 | 0.881 |" in markdown_table([row])
    assert main([str(tmp_path / "missing")]) == 2 and "results.csv not found" in capsys.readouterr().err
