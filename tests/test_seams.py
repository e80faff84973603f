"""The seams from a real simulation to the user: the driver (``executors.execute``) ->
the store -> ``effmodel report``.

A tiny real network (one 'same' stride-2 convolution, whose padding is
asymmetric, and a dense classifier) is trained briefly on real MNIST,
converted and simulated; the stored row is then checked against numbers
worked out here without effmodel's counting or threshold code:

* FLOPs, MACs and synapses by hand (padding taps excluded), see
  :data:`HAND`;
* the threshold step and the SO-Costs from the stored per-step series
  (a plain loop over the error curve, the definition in the README);
* the factor = (FLOPs/2 x 14 + FLOPs/2) / SO-Costs (the report-14x preset);
* neuron updates, mean spike rate and total SynOps from the per-layer rows.

Then ``effmodel report`` (a subprocess, as a user runs it) must show the
stored factor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from effmodel.specs import ArchitectureSpec, LayerSpec

pytestmark = pytest.mark.slow

SPEC = ArchitectureSpec(
    name="SeamCNN", dataset="mnist", input_shape=(28, 28, 1), epochs=1,
    layers=(LayerSpec(type="conv2d", name="conv", filters=4, kernel=3, stride=2, padding="same"),
            LayerSpec(type="flatten", name="flat"),
            LayerSpec(type="dense", name="out", units=10, activation="softmax")),
)

# Worked by hand.  conv: 'same', k 3, s 2 on 28 -> ceil(28/2) = 14 outputs per
# axis; total padding (14-1)*2 + 3 - 28 = 1, all of it after the image (TF
# puts the smaller half first).  Output o covers rows 2o..2o+2: 13 windows
# with 3 real rows, the last (26..28) with 2, so 13*3 + 2 = 41 real taps per
# axis and 41*41 = 1681 per (input channel, filter) pair.
CONV_NEURONS = 14 * 14 * 4  # 784
CONV_SYNAPSES = 41 * 41 * 1 * 4  # 6,724 (nominal: 784 x 9 = 7,056)
DENSE_SYNAPSES = 784 * 10  # 7,840
# exact FLOPs per neuron with n real taps: n mults + (n-1) adds + 1 bias = 2n
HAND = {
    "ann_macs": 784 * 9 + 7840,  # 14,896
    "ann_synapses": CONV_SYNAPSES + DENSE_SYNAPSES,  # 14,564
    "ann_flops": 2 * CONV_SYNAPSES + 2 * DENSE_SYNAPSES,  # 29,128
    "ann_flops_snntoolbox": 2 * (784 * 9 + 7840) + 784 + 10,  # 2 x MACs + biases = 30,586
    "params": 3 * 3 * 1 * 4 + 4 + 784 * 10 + 10,  # 7,890
}
T = 30
N_TEST = 20
TOL = 0.01


def hand_threshold_step(error: list[float], tol: float) -> int:
    """First 1-based step from which the error never exceeds final + tol."""
    final = error[-1]
    step = 1
    for t, e in enumerate(error, start=1):
        if e > final + tol + 1e-12:
            step = t + 1
    return step


def test_hand_counts_of_the_padded_network():
    """The hand-worked FLOPs of a padded network (asymmetric 'same', stride 2)."""
    from effmodel.counting import count_network

    c = count_network(SPEC)
    assert (c.macs, c.synapses, c.flops_exact, c.flops_snntoolbox, c.params) == (
        HAND["ann_macs"], HAND["ann_synapses"], HAND["ann_flops"], HAND["ann_flops_snntoolbox"], HAND["params"])
    assert c.spiking_neurons == CONV_NEURONS + 10


@pytest.fixture(scope="module")
def stored(data_dir, tmp_path_factory):
    """SeamCNN through the one driver (norse, in this process) into a store; the stored tables."""
    import os

    from effmodel import plugins
    from effmodel.executors import ExecutorSettings, WorkItem, execute
    from effmodel.pipeline import RunSettings, item_key
    from effmodel.simulation import NormalisationSettings
    from effmodel.store import Store

    if "norse" not in plugins.get_simulators():
        pytest.skip("the norse simulator plugin is not installed")
    out = tmp_path_factory.mktemp("seam")
    cache = Path(os.environ.get("EFFMODEL_CACHE_DIR") or tmp_path_factory.mktemp("cache"))
    settings = RunSettings(simulator="norse", output=out, data_dir=data_dir, cache_dir=cache, num_test=N_TEST,
                           duration=T, batch_size=N_TEST, epochs=1, max_train_images=1000,
                           normalisation=NormalisationSettings(num_images=100), cost_model="report-14x",
                           threshold_tolerance=TOL)
    with Store(out) as store:
        run = store.start_run("test_seams", {})
        summary = execute([WorkItem(spec=SPEC, settings=settings, run_id=run, key=item_key(SPEC, settings))], store,
                          ExecutorSettings(), stop_on_error=True)
        store.finish_run(run)
    assert summary.done == [SPEC.name] and not summary.failed and not summary.left
    returned = summary.rows[0]
    with Store(out) as store:
        rows, ts, layers = store.results(), store.timesteps(), store.layers()
    assert len(rows) == 1
    return out, returned, rows[0], ts, layers


def test_stored_row_matches_independent_values(stored):
    _, returned, row, ts, layers = stored
    assert row["factor"] == returned["factor"]  # what the driver computed is what was stored
    for k, v in HAND.items():
        assert row[k] == v, k
    error = [r["error"] for r in ts]
    cumulative = [r["synops_cumulative"] for r in ts]
    assert [r["t"] for r in ts] == list(range(1, T + 1))
    step = hand_threshold_step(error, TOL)
    so = cumulative[step - 1]
    assert so > 0
    assert row["threshold_step"] == step
    assert row["synops_at_threshold"] == pytest.approx(so, rel=1e-12)
    total_costs = HAND["ann_flops"] / 2 * 14 + HAND["ann_flops"] / 2  # report-14x
    assert row["total_costs"] == pytest.approx(total_costs, rel=1e-12)
    assert row["snn_costs"] == pytest.approx(so, rel=1e-12)
    assert row["factor"] == pytest.approx(total_costs / so, rel=1e-12)
    # the per-step series and the per-layer rows tell the same story
    assert {l["layer"] for l in layers} == {"conv", "out"}
    spikes = sum(l["spikes"] for l in layers)
    assert row["synops_total"] == pytest.approx(sum(l["synops"] for l in layers) / N_TEST, rel=1e-12)
    assert row["synops_total"] == pytest.approx(cumulative[-1], rel=1e-12)
    assert row["neuron_updates_total"] == (CONV_NEURONS + 10) * T
    assert row["mean_spike_rate"] == pytest.approx(spikes / ((CONV_NEURONS + 10) * T * N_TEST), rel=1e-12)
    assert row["snn_accuracy"] == pytest.approx(1 - error[-1], abs=1e-12)
    assert row["ann_flops_simulator"] is None  # norse reports no ANN operation count of its own


def test_report_shows_the_stored_result(stored, run_effmodel, tmp_path):
    out, _, row, _, _ = stored
    proc = run_effmodel("report", "--input", str(out), "--format", "md", "--output", str(tmp_path / "rep"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (tmp_path / "rep" / "report.md").read_text()
    rows = [[c.strip() for c in l.strip("|").split("|")] for l in md.splitlines() if l.startswith("| SeamCNN |")]
    assert rows, "the stored model is missing from the report's tables"
    shown = f"{row['factor']:.3g}"  # three significant digits, as the report's tables print floats
    assert any(shown in cells for cells in rows), (shown, rows)
