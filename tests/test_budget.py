"""Time budgets (issue 20): durations and deadlines parse or fail in one
line, estimates are first guesses calibrated by stored phase times, and a
budgeted run starts only what fits, stops what runs over, and says how many
items are left."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from effmodel import budget as B
from effmodel.errors import UsageError


@pytest.mark.parametrize("text, seconds", [("150m", 9000), ("2h30m", 9000), ("1.5h", 5400), ("90s", 90),
                                           ("1d2h", 93600), (" 2h 5m ", 7500)])
def test_durations(text, seconds):
    assert B.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10", "5 minutes", "-5m", "0m", "1h-2m", "m"])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(UsageError) as e:
        B.parse_duration(text)
    assert "\n" not in str(e.value) and "--time-budget" in str(e.value)


def test_deadlines():
    now = datetime(2026, 12, 3, 15, 0, 0).timestamp()
    assert B.parse_deadline("17:45", now) - now == 2 * 3600 + 45 * 60
    assert B.parse_deadline("2026-12-04T01:00", now) - now == 10 * 3600
    with pytest.raises(UsageError, match="already passed"):
        B.parse_deadline("14:59", now)
    with pytest.raises(UsageError, match="cannot read"):
        B.parse_deadline("tomorrow", now)
    with pytest.raises(UsageError, match="not both"):
        B.TimeBudget.from_options("1h", "17:45", now)
    assert B.TimeBudget.from_options(None, None) is None
    assert B.TimeBudget.from_options("90s", None, now).deadline == now + 90


# The training guess by hand (effmodel.budget.TRAIN_TIME_MODEL): 3 s + ceil(images / 128) x (6.6e-3 +
# 1.6e-3 x layers) + images x (2.8e-11 x MACs + 2.1e-9 x neurons).
# 1e6 MACs, 1,000 neurons, 5 layers, 10,000 images: 79 x 0.0146 = 1.1534; 1e4 x 3.01e-5 = 0.301.
G1 = 3 + 1.1534 + 0.301
# 1e6 MACs, no neurons or layers recorded, 10,000 images: 79 x 0.0066 = 0.5214; 1e4 x 2.8e-5 = 0.28.
G0 = 3 + 0.5214 + 0.28
# 4e6 MACs, no neurons or layers, 20,000 images: 157 x 0.0066 = 1.0362; 2e4 x 1.12e-4 = 2.24.
G4 = 3 + 1.0362 + 2.24


def test_first_guesses_by_hand():
    est = B.PhaseEstimator([]).estimate(macs=1e6, dataset="mnist", simulator="norse", epochs_left=2,
                                         train_images=10_000, images=100, duration=50, neurons=1000, layers=5)
    assert est.epoch == pytest.approx(G1) and est.train == pytest.approx(2 * G1)
    # 100 images x 50 steps x (1e-3 + 1e6 / 1e10) s = 5000 x 1.1e-3 = 5.5 s
    assert est.simulate == pytest.approx(5.5)
    assert est.convert == 30.0 and est.count == 60.0
    assert est.total == pytest.approx(2 * G1 + 5.5 + 30 + 60)
    cached = B.PhaseEstimator([]).estimate(macs=1e6, dataset="mnist", simulator="norse", epochs_left=0,
                                           train_images=10_000, images=100, duration=50)
    assert cached.train == 0.0


def test_stored_phase_times_calibrate_the_guess():
    # Stored rows of 1e6 MACs (no neurons or layers recorded): training guess G0 per epoch of 10,000
    # images, simulation guess 5.5 s for 100 images x 50 steps.  A norse row that simulated 4x slower
    # than guessed and trained 2x slower, with measured convert/count times; an inisim row that must
    # not calibrate norse
    rows = [
        {"dataset": "mnist", "simulator": "norse", "ann_macs": 1e6, "num_test": 100, "duration": 50,
         "simulate_seconds": 4 * 5.5, "train_seconds": 2 * G0 * 5, "train_epochs_run": 5, "train_images": 10_000,
         "convert_seconds": 4.0, "count_seconds": 7.0},
        {"dataset": "mnist", "simulator": "inisim", "ann_macs": 1e6, "num_test": 100, "duration": 50,
         "simulate_seconds": 100 * 5.5, "train_seconds": None, "train_epochs_run": None, "train_images": None,
         "convert_seconds": 4.0, "count_seconds": 7.0},
        # a CIFAR-10 norse row, 50x slower than guessed: MNIST rows exist, so it is not used for MNIST
        {"dataset": "cifar10", "simulator": "norse", "ann_macs": 1e6, "num_test": 100, "duration": 50,
         "simulate_seconds": 50 * 5.5, "train_seconds": 50 * G0, "train_epochs_run": 1, "train_images": 10_000,
         "convert_seconds": 400.0, "count_seconds": 700.0},
        # a row stored before the phase columns existed: its simulation's wall_seconds stands in (4x)
        {"dataset": "mnist", "simulator": "norse", "ann_macs": 1e6, "num_test": 100, "duration": 50,
         "wall_seconds": 4 * 5.5},
    ]
    est = B.PhaseEstimator(rows).estimate(macs=4e6, dataset="mnist", simulator="norse", epochs_left=1,
                                          train_images=20_000, images=10, duration=100)
    # the new item's guesses: epoch G4; step 1e-3 + 4e-4 = 1.4e-3 s
    assert est.epoch == pytest.approx(2 * G4)
    assert est.simulate == pytest.approx(4 * 10 * 100 * 1.4e-3)
    assert est.convert == 4.0 and est.count == 7.0
    # another simulator without its own rows falls back to the uncalibrated guess
    other = B.PhaseEstimator(rows).estimate(macs=4e6, dataset="mnist", simulator="numpy", epochs_left=0,
                                            train_images=20_000, images=10, duration=100)
    assert other.simulate == pytest.approx(10 * 100 * 1.4e-3)
    # a dataset without rows of its own uses the others (medians over all three norse rows: 4, 4, 50)
    svhn = B.PhaseEstimator(rows).estimate(macs=4e6, dataset="svhn", simulator="norse", epochs_left=1,
                                           train_images=20_000, images=10, duration=100)
    assert svhn.simulate == pytest.approx(4 * 10 * 100 * 1.4e-3)
    assert svhn.epoch == pytest.approx((2 + 50) / 2 * G4)  # training: the two rows with training times
    assert svhn.convert == 4.0  # median of 4, 4, 400


def test_stored_rows_calibrate_by_their_own_size():
    """A stored row's own neurons and Keras layers (from its spec_json) enter its guess."""
    import json

    row = {"dataset": "mnist", "simulator": "norse", "ann_macs": 1e6, "neurons": 1000, "num_test": 100,
           "duration": 50, "simulate_seconds": 5.5, "train_seconds": 3 * G1, "train_epochs_run": 1,
           "train_images": 10_000, "spec_json": json.dumps({"layers": [{}] * 5})}
    est = B.PhaseEstimator([row]).estimate(macs=4e6, dataset="mnist", simulator="norse", epochs_left=1,
                                           train_images=20_000, images=10, duration=100)
    assert est.epoch == pytest.approx(3 * G4)


def test_rows_stored_before_phase_columns_get_their_training_time_from_the_cache(tmp_path):
    import json

    from effmodel.pipeline import with_training_times

    (tmp_path / "k1").mkdir()
    (tmp_path / "k1" / "meta.json").write_text(json.dumps({"train_seconds": 120.0, "epochs_run": 25,
                                                           "train_images": 51_000}))
    rows = [{"model": "A", "extra_json": json.dumps({"model_key": "k1"})},
            {"model": "B", "extra_json": json.dumps({"model_key": "gone"})},  # no longer cached
            {"model": "C", "train_seconds": 7.0, "extra_json": json.dumps({"model_key": "k1"})}]  # has its own
    a, b, c = with_training_times(rows, tmp_path)
    assert (a["train_seconds"], a["train_epochs_run"], a["train_images"]) == (120.0, 25, 51_000)
    assert b.get("train_seconds") is None
    assert c["train_seconds"] == 7.0


def test_simulation_abandoned_at_the_deadline(tmp_path, data_dir, model_cache):
    """compute_item with a deadline that has passed: the simulation stops after
    its first batch with BudgetExhausted (the model trains first: no deadline
    check inside a training that has no finished epoch to measure)."""
    from effmodel import plugins
    from effmodel.pipeline import RunSettings, compute_item
    from effmodel.simulation import NormalisationSettings

    spec = plugins.get_architectures()["SmallCNN1"]
    settings = RunSettings(simulator="numpy", output=tmp_path, data_dir=data_dir, cache_dir=model_cache, num_test=20,
                           duration=5, batch_size=5, epochs=1, max_train_images=300,
                           normalisation=NormalisationSettings(num_images=100))
    with pytest.raises(B.BudgetExhausted, match="simulation abandoned by the time budget after 5 of 20 images"):
        compute_item(spec, settings, "r", log=lambda m: None, deadline=time.time() - 1)


RUN = ["run", "--simulator", "numpy", "--models", "SmallCNN1", "--epochs", "1", "--max-train-images", "300",
       "--num-test", "20", "--duration", "5", "--norm-images", "100"]


def test_budget_too_small_does_nothing(run_effmodel, clean_env, tmp_path, data_dir, model_cache):
    out = tmp_path / "out"
    r = run_effmodel(*RUN, "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cold"), "-o", str(out),
                     "--time-budget", "20s")
    assert r.returncode == 0, r.stderr
    assert "too small for any of the 1 items left" in r.stdout and "nothing done" in r.stdout
    assert "0 of 1 items stored" in r.stdout
    assert not out.exists()  # nothing written: no store, no folder
    cold = tmp_path / "cold"
    assert not cold.exists() or not any(cold.iterdir())  # and nothing trained: no entry, no checkpoint


def test_budgeted_run_stores_then_skips(run_effmodel, tmp_path, data_dir, model_cache):
    out = tmp_path / "out"
    args = [*RUN, "--data-dir", str(data_dir), "--cache-dir", str(model_cache), "-o", str(out), "--time-budget", "30m"]
    first = run_effmodel(*args, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == "1 of 1 items stored; 0 left; rerun the same command to continue"
    import csv

    with open(out / "results.csv") as f:
        row = next(csv.DictReader(f))
    for col in ("train_seconds", "convert_seconds", "simulate_seconds", "count_seconds"):
        assert float(row[col]) > 0, col
    assert int(row["train_epochs_run"]) == 1 and int(row["train_images"]) == 300
    assert "cores" in row["machine"]
    again = run_effmodel(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already stored" in again.stderr
    assert again.stdout.strip().splitlines()[-1] == "1 of 1 items stored; 0 left; rerun the same command to continue"


def test_gate_starts_what_fits_and_leaves_the_rest(tmp_path, data_dir, model_cache):
    """The driver's gate with estimates given by hand: the item that fits is
    computed and stored (with the deadline handed down), the one that does not
    is never started and is counted as left."""
    from effmodel import plugins
    from effmodel.executors import ExecutorSettings, WorkItem, execute
    from effmodel.pipeline import RunSettings, item_key
    from effmodel.simulation import NormalisationSettings
    from effmodel.store import Store

    arch = plugins.get_architectures()
    settings = RunSettings(simulator="numpy", output=tmp_path, data_dir=data_dir, cache_dir=model_cache, num_test=10,
                           duration=5, batch_size=10, epochs=1, max_train_images=300,
                           normalisation=NormalisationSettings(num_images=100))
    seen: list[tuple[str, float | None]] = []

    def estimate(item, estimator):
        seen.append((item.name, None))
        return B.ItemEstimate(train=0, convert=0, simulate=5.0 if item.name == "SmallCNN1" else 5000.0, count=0)

    budget = B.TimeBudget(time.time() + 600)
    with Store(tmp_path) as store:
        run = store.start_run("test", {})
        items = [WorkItem(spec=arch[m], settings=settings, run_id=run, key=item_key(arch[m], settings))
                 for m in ("MediumCNN1", "SmallCNN1")]
        summary = execute(items, store, ExecutorSettings(), budget=budget, estimate=estimate)
        stored = [r["model"] for r in store.results()]
    assert [n for n, _ in seen] == ["MediumCNN1", "SmallCNN1"]
    assert summary.left == ["MediumCNN1"] and summary.done == ["SmallCNN1"] and not summary.failed
    assert stored == ["SmallCNN1"]
    assert summary.smallest_left == 5000.0
    assert summary.budget_line(2) == "1 of 2 items stored; 1 left; rerun the same command to continue"
