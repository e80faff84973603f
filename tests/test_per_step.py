"""What the store keeps per step and image, and what the report makes of it.

The cost step's uncertainty over test images, end to end.

Per-image correctness per step is stored bit-packed beside its result (in the
result's transaction, replaced with it, never in the CSV exports; stores
without the table still open), the pipeline hands it over from a real
simulation, and the report shows every result's settle step and factor with
a bootstrap interval over images, computed here by hand from the matrix
(exact binomial probabilities, report-14x's hand formula)."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from effmodel.counting import count_network
from effmodel.paths import architectures_dir
from effmodel.readout import unpack_correct
from effmodel.specs import load_spec_dir
from effmodel.store import Store


def _row(run_id: str, model: str, num_test: int, duration: int, **kw) -> dict:
    return {"run_id": run_id, "item_key": f"{model}-k", "model": model, "dataset": "mnist", "simulator": "sim",
            "cost_model": "report-14x", "seed": 0, "num_test": num_test, "duration": duration, "factor": 2.0} | kw


def _steps(run_id: str, model: str, duration: int) -> list[dict]:
    return [{"run_id": run_id, "model": model, "simulator": "sim", "t": t, "error": 0.1, "synops_cumulative": 1.0 * t}
            for t in range(1, duration + 1)]


def _read(store: Store) -> dict[str, np.ndarray]:
    return {r["model"]: unpack_correct(r["packed"], r["images"], r["steps"]) for r in store.correct_images()}


# --- the store ------------------------------------------------------------------------------


def test_correctness_round_trips_bit_exactly_and_is_replaced_with_its_result(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.random((1000, 37)) < 0.7  # 37 steps: rows do not end on a byte boundary
    b = rng.random((3, 5)) < 0.5
    with Store(tmp_path) as store:
        run = store.start_run("test", {})
        store.write_result(_row(run, "A", 1000, 37), _steps(run, "A", 37), [], a)
        store.write_result(_row(run, "B", 3, 5), _steps(run, "B", 5), [], b)
        got = _read(store)
        assert got["A"].dtype == bool and np.array_equal(got["A"], a) and np.array_equal(got["B"], b)
        # the same item again (a later run): one matrix, the new one; without one, none is left behind
        run2 = store.start_run("again", {})
        store.write_result(_row(run2, "A", 1000, 37), _steps(run2, "A", 37), [], ~a)
        store.write_result(_row(run2, "B", 3, 5), _steps(run2, "B", 5), [])
        assert [(r["run_id"], r["model"]) for r in store.correct_images()] == [(run2, "A")]
        assert np.array_equal(_read(store)["A"], ~a)
        (n,) = store._db.execute("SELECT COUNT(*) FROM image_correctness").fetchone()
        assert n == 1


def test_a_failed_write_leaves_no_correctness_and_a_wrong_shape_is_refused(tmp_path):
    with Store(tmp_path) as store:
        run = store.start_run("test", {})

        def exploding():
            yield _steps(run, "A", 1)[0]
            raise RuntimeError("killed mid-write")

        with pytest.raises(RuntimeError):
            store.write_result(_row(run, "A", 4, 3), exploding(), [], np.ones((4, 3), bool))
        with pytest.raises(ValueError, match="3 steps, but the row's duration is 5"):
            store.write_result(_row(run, "A", 4, 5), _steps(run, "A", 5), [], np.ones((4, 3), bool))
        with pytest.raises(ValueError, match="bool"):
            store.write_result(_row(run, "A", 4, 3), _steps(run, "A", 3), [], np.ones((4, 3), int))
        assert store.results() == [] and store.correct_images() == []
        assert store._db.execute("SELECT COUNT(*) FROM image_correctness").fetchone()[0] == 0  # no orphan either


def test_csv_exports_do_not_carry_the_matrix(tmp_path):
    c = np.random.default_rng(1).random((2000, 100)) < 0.5  # about 25 KB packed: incompressible
    with Store(tmp_path) as store:
        run = store.start_run("test", {})
        store.write_result(_row(run, "A", 2000, 100), _steps(run, "A", 100), [], c)
        res, ts = store.export_csv()
        packed = store.correct_images()[0]["packed"]
    sizes = {p.name: p.stat().st_size for p in tmp_path.glob("*.csv")}
    assert set(sizes) == {"results.csv", "timesteps.csv", "layers.csv"}
    assert sum(sizes.values()) < len(packed)  # the CSVs together are smaller than the matrix alone
    assert "packed" not in res.read_text() and "image_correctness" not in res.read_text()


def test_ten_thousand_images_by_150_steps_take_well_under_100_kb():
    """A pessimistic matrix: images settle late (median step 15) and flicker
    between right and wrong for ten steps after, 2 % never settle."""
    from effmodel.readout import pack_correct

    rng = np.random.default_rng(0)
    n, T = 10_000, 150
    t = np.arange(1, T + 1)
    settle = np.minimum(rng.lognormal(np.log(15), 0.7, n).astype(int) + 1, T + 1)
    c = t[None, :] >= settle[:, None]
    c ^= (t[None, :] < settle[:, None] + 10) & (rng.random((n, T)) < 0.3)
    wrong = rng.random(n) < 0.02
    c[wrong] = rng.random((int(wrong.sum()), T)) < 0.2
    size = len(pack_correct(c))
    assert size < 70_000, size
    assert np.array_equal(unpack_correct(pack_correct(c), n, T), c)


def test_a_store_written_before_the_table_existed_opens_and_reads(tmp_path):
    """An older store (no image_correctness table): it opens, its results
    read back, it has no matrices, and the table is there for new results."""
    with Store(tmp_path) as store:
        run = store.start_run("old", {})
        store.write_result(_row(run, "Old", 2, 3), _steps(run, "Old", 3), [])
    with sqlite3.connect(tmp_path / "effmodel.sqlite") as db:
        db.execute("DROP TABLE image_correctness")
    with Store(tmp_path) as store:
        assert [r["model"] for r in store.results()] == ["Old"] and store.correct_images() == []
        run = store.start_run("new", {})
        store.write_result(_row(run, "New", 2, 3), _steps(run, "New", 3), [], np.eye(2, 3, dtype=bool))
        assert np.array_equal(_read(store)["New"], np.eye(2, 3, dtype=bool))


def test_the_committed_campaign_stores_still_load(tmp_path):
    """The committed stores predate the table: the report's input reads them
    (copies: opening adds the table) with no per-image correctness."""
    import shutil

    from effmodel.analysis.frame import load_inputs

    src = Path(__file__).resolve().parent.parent / "reports" / "campaign" / "reference-norse" / "effmodel.sqlite"
    if not src.is_file():
        pytest.skip("the committed campaign store is not in this checkout")
    shutil.copy(src, tmp_path / "effmodel.sqlite")
    inp = load_inputs(tmp_path)
    assert len(inp.results) >= 1 and len(inp.correct) == 0
    from effmodel.analysis.coststep import NO_CORRECTNESS, item_cost_steps
    from effmodel.plugins import get_cost_models

    items = item_cost_steps(inp, get_cost_models(), B=200)
    assert len(items) == len(inp.results)
    assert all(i.interval is None and i.cells() == ["-", "-"] and i.why == NO_CORRECTNESS for i in items.values())


# --- the pipeline hands it over -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(data_dir, tmp_path_factory) -> dict:
    """A tiny converted network (no training: a least-squares readout) run
    through the numpy simulator by the executors' driver, priced by the fair
    preset, in a store of its own (``store``), with the network and settings."""
    from effmodel import plugins
    from effmodel.conversion import convert
    from effmodel.datasets import to_float
    from effmodel.forward import iter_layers
    from effmodel.pipeline import RunSettings, dataset_arrays
    from effmodel.simulation import LayerWeights, NormalisationSettings
    from effmodel.specs import ArchitectureSpec, LayerSpec
    from effmodel.testing import store_item

    if "numpy" not in plugins.get_simulators():
        pytest.skip("the numpy simulator plugin is not installed")
    spec = ArchitectureSpec(name="tiny", dataset="mnist", input_shape=(28, 28, 1), layers=(
        LayerSpec(type="conv2d", name="c1", filters=4, kernel=3, stride=2, padding="same"),
        LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="out", units=10, activation="softmax")))
    _, arrays = dataset_arrays("mnist", data_dir)
    rng = np.random.default_rng(3)
    conv = LayerWeights(rng.normal(0, 0.5, size=(3, 3, 1, 4)).astype(np.float32), np.zeros(4, np.float32))
    x = to_float(arrays.x_train[:1000])
    zero = {"c1": conv, "out": LayerWeights(np.zeros((784, 10), np.float32), None)}
    feats = [o for _, _, o in iter_layers(spec, zero, x)][1]
    w, *_ = np.linalg.lstsq(feats, np.eye(10)[arrays.y_train[:1000]], rcond=None)
    network = convert(spec, {"c1": conv, "out": LayerWeights(w.astype(np.float32), np.zeros(10, np.float32))}, arrays,
                      NormalisationSettings(num_images=200))
    out = tmp_path_factory.mktemp("tiny")
    settings = RunSettings(simulator="numpy", output=out, data_dir=data_dir, num_test=60, duration=25, batch_size=20,
                           cost_model="fair-45nm-fp32", record_layers=False)
    with Store(out) as store:  # through the executors' driver, as `effmodel run` stores it
        assert store_item(spec, settings, store, store.start_run("test", {}), network=network) is not None
    return {"store": out, "network": network, "settings": settings}


def test_a_real_simulation_stores_correctness_that_reproduces_its_error_curve(tiny):
    """The stored matrix (the core's readout of each image's output spikes)
    gives, per step, the error the simulator counted itself."""
    with Store(tiny["store"]) as store:
        (stored,) = store.correct_images()
        errors = np.array([r["error"] for r in store.timesteps()])
    c = unpack_correct(stored["packed"], stored["images"], stored["steps"])
    assert c.shape == (60, 25)
    assert np.allclose(1 - c.mean(axis=0), errors, atol=1e-12)
    assert 0 < c[:, -1].mean() < 1  # a real mix of right and wrong images


def test_accuracy_against_cost_figure_data_are_the_stored_rows_priced_by_hand(tiny):
    """The figure's data, not its pixels: accuracy and SynOps per step are the
    stored series; report-14x (the primary pricing: first layer once) by the
    hand formula at every step (ANN = exact FLOPs x 7.5; SNN = SynOps up to t +
    the first layer's real synapses x 15, its exact FLOPs x 7.5); the fair
    preset equals, at the stored cost point, what the run itself priced, and
    at another step what a fresh run whose cost point falls there prices
    (within 0.1 %: the output layer's spike writes are the one term that does
    not scale with the network's SynOps; this network has one layer that
    receives SynOps, so no layer's share can drift)."""
    from effmodel.pipeline import compute_item
    from effmodel.analysis.figures import accuracy_cost_data, accuracy_cost_figures
    from effmodel.analysis.frame import load_inputs

    inp = load_inputs(tiny["store"])
    (d,) = accuracy_cost_data(inp, set())
    (row,) = inp.results.to_dict("records")
    ts = inp.timesteps.sort_values("t")
    err, syn = ts["error"].to_numpy(float), ts["synops_cumulative"].to_numpy(float)
    assert np.array_equal(d.accuracy, 1 - err) and np.array_equal(d.synops, syn)
    assert d.ann_accuracy == row["ann_accuracy"] and d.ann_macs == row["ann_macs"]
    curves = {c.cost_model: c for c in d.curves}
    assert set(curves) == {"report-14x", "fair-45nm-fp32"}
    r14 = curves["report-14x"]
    assert r14.ann_cost == pytest.approx(row["ann_flops"] * 7.5, rel=1e-12)
    assert np.allclose(r14.snn_cost, syn + row["synops_input_layer"] * 15, rtol=1e-12) and r14.exact_at is None
    fair, t = curves["fair-45nm-fp32"], int(row["threshold_step"])
    assert row["cost_model"] == "fair-45nm-fp32" and fair.exact_at == t
    assert fair.snn_cost[t - 1] == pytest.approx(row["snn_costs"], rel=1e-9)
    assert fair.ann_cost == pytest.approx(row["total_costs"], rel=1e-9)
    assert np.all(np.diff(fair.snn_cost) > 0)  # neuron updates alone make every step cost more
    early = compute_item(tiny["network"].spec, replace(tiny["settings"], threshold_tolerance=0.5), "early",
                         network=tiny["network"]).row
    assert early["threshold_step"] < t
    assert fair.snn_cost[early["threshold_step"] - 1] == pytest.approx(early["snn_costs"], rel=1e-3)
    (fig,) = accuracy_cost_figures(inp, set())
    assert fig.png[:4] == b"\x89PNG"


# --- the report ------------------------------------------------------------------------------------

N, T = 40, 20
LATE = {5: 0, 12: 1}  # image 0 is right from step 5 on, image 1 from step 12; the other 38 from step 1


def _correctness() -> np.ndarray:
    c = np.ones((N, T), bool)
    for step, image in LATE.items():
        c[image, : step - 1] = False
    return c


def _report_store(directory: Path) -> dict[str, dict]:
    """Three reference models with T = 20, 40 test images: SmallCNN1 with the
    matrix above, MediumCNN1 without one, SmallCNN2 with a matrix that does
    not reproduce its error curve (another readout)."""
    specs = {s.name: s for s in load_spec_dir(architectures_dir())}
    rows = {}
    with Store(directory) as store:
        run = store.start_run("effmodel run", {"settings": {"simulator": "sim"}})
        for i, name in enumerate(("SmallCNN1", "MediumCNN1", "SmallCNN2")):
            spec = specs[name]
            c = _correctness()
            err = 1 - c.mean(axis=0)
            syn = 1000.0 * (i + 1) * np.arange(1, T + 1)  # cumulative SynOps per image
            ann = count_network(spec).flops_exact * 7.5
            row = _row(run, name, N, T, item_key=f"{name}-k", dataset=spec.dataset, depth=spec.depth,
                       conv_layers=spec.conv_layers, dense_layers=spec.dense_layers, spec_json=json.dumps(spec.to_dict()),
                       threshold_tolerance=0.01, threshold_step=12, synops_at_threshold=syn[11], total_costs=ann,
                       snn_costs=syn[11], factor=ann / syn[11], ann_accuracy=1.0, snn_accuracy=1.0, family="reference",
                       params=count_network(spec).params, neurons=count_network(spec).neurons,
                       ann_macs=count_network(spec).macs, ann_flops=count_network(spec).flops_exact,
                       ann_flops_snntoolbox=count_network(spec).flops_snntoolbox, extra_json="{}")
            steps = [{"run_id": run, "model": name, "simulator": "sim", "t": t, "error": float(err[t - 1]),
                      "synops_cumulative": float(syn[t - 1])} for t in range(1, T + 1)]
            matrix = {"SmallCNN1": c, "MediumCNN1": None, "SmallCNN2": np.roll(c, 3, axis=1)}[name]
            store.write_result(row, steps, [], matrix)
            rows[name] = row | {"syn": syn}
        store.finish_run(run)
    return rows


def _table(md: str, section: str, first_head: str) -> list[list[str]]:
    """The body rows of the first Markdown table of ``section`` whose header starts with ``first_head``."""
    lines = md.split(f"## {section}", 1)[1].split("\n## ", 1)[0].splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("|") and l.strip("| ").startswith(first_head))
    out = []
    for l in lines[start + 2:]:
        if not l.startswith("|"):
            break
        out.append([c.strip() for c in l.strip().strip("|").split("|")])
    return out


def test_the_report_shows_each_results_interval_as_computed_by_hand(tmp_path):
    """SmallCNN1's settle step is 12 (image 1 keeps the error at 2.5 % > 1 %
    until then).  A resample's step is 12 when it draws image 1, else 5 when
    it draws image 0, else 1: P(no image 1) = (39/40)^40 = 0.363 and
    P(neither) = (38/40)^40 = 0.129, both inside (2.5 %, 97.5 %), so the 95 %
    interval is [1, 12].  The factor (report-14x: exact FLOPs x 7.5 over the
    SynOps up to the step) is ANN / SynOps(12) [ANN / SynOps(12), ANN / SynOps(1)]."""
    from effmodel.analysis.report import generate

    assert (39 / 40) ** 40 == pytest.approx(0.363, abs=1e-3) and (38 / 40) ** 40 == pytest.approx(0.129, abs=1e-3)
    rows = _report_store(tmp_path)
    generate(tmp_path, tmp_path / "out", formats=["md"], bootstrap=400)
    md = (tmp_path / "out" / "report.md").read_text()
    r = rows["SmallCNN1"]
    ann, syn = r["total_costs"], r["syn"]
    want_step = "12 [1, 12]"
    want_factor = f"{ann / syn[11]:.3g} [{ann / syn[11]:.3g}, {ann / syn[0]:.3g}]"
    table = {c[0]: c for c in _table(md, "The cost step over a resample of the test images", "model")}
    assert table["SmallCNN1"][4:6] == [want_step, want_factor]
    assert table["SmallCNN1"][3] == str(N)
    assert table["MediumCNN1"][4:6] == ["-", "-"] and "no per-image correctness stored" in table["MediumCNN1"][-1]
    assert table["SmallCNN2"][4:6] == ["-", "-"] and "does not reproduce the stored error curve" in table["SmallCNN2"][-1]
    t2 = {c[0]: c for c in _table(md, "Table 2: the report beside ours", "model")}
    assert t2["SmallCNN1"][-1] == f"{want_step}; {want_factor}"
    assert t2["MediumCNN1"][-1] == "-" and t2["SmallCNN2"][-1] == "-"
    assert re.search(r"Cost step: 95 % intervals over test images for 1 of 3 results \(median width 11 steps\)", md)
