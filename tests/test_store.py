"""The results store: a result is written whole or not at all, also when the
writer is killed, and CSV export round-trips."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from effmodel.store import LAYER_COLUMNS, RESULT_COLUMNS, TIMESTEP_COLUMNS, Store


def _result(run_id: str, model: str, duration: int, factor: float = 1.5) -> tuple[dict, list[dict], list[dict]]:
    row = {"run_id": run_id, "item_key": f"{model}-k", "model": model, "dataset": "mnist", "simulator": "sim",
           "cost_model": "report-14x", "seed": 0, "epochs": 1, "params": 347146, "ann_macs": 541440,
           "duration": duration, "factor": factor, "snn_accuracy": 0.9875, "spec_json": {"name": model}}
    steps = [{"run_id": run_id, "model": model, "simulator": "sim", "t": t, "error": 1.0 / t, "synops_cumulative": 10.0 * t}
             for t in range(1, duration + 1)]
    layers = [{"run_id": run_id, "model": model, "simulator": "sim", "layer": name, "type": "conv2d", "neurons": 10,
               "spikes": 3, "synops": 30, "spike_rate": 0.3} for name in ("a", "b")]
    return row, steps, layers


def test_write_and_read_back(tmp_path):
    with Store(tmp_path) as store:
        run = store.start_run("run", {"seed": 0})
        store.write_result(*_result(run, "SmallCNN1", 5))
        store.finish_run(run)
        (row,) = store.results(run)
        assert row["model"] == "SmallCNN1" and row["duration"] == 5 and row["factor"] == 1.5
        assert row["spec_json"] == '{"name": "SmallCNN1"}'
        assert [r["t"] for r in store.timesteps(run)] == [1, 2, 3, 4, 5]
        assert len(store.layers(run)) == 2
        assert store.runs()[0]["status"] == "complete"
        assert store.has_item("SmallCNN1-k", "sim") and not store.has_item("SmallCNN1-k", "other")
        # rewriting the same (run, model, simulator) replaces its series instead of appending
        store.write_result(*_result(run, "SmallCNN1", 3, factor=2.0))
        assert [r["t"] for r in store.timesteps(run)] == [1, 2, 3]
        assert [r["factor"] for r in store.results(run)] == [2.0]


def test_unknown_column_rejected(tmp_path):
    with Store(tmp_path) as store:
        row, steps, layers = _result("r", "m", 2)
        with pytest.raises(ValueError, match="bogus"):
            store.write_result(row | {"bogus": 1}, steps, layers)
        assert store.results() == []


def test_failure_midway_leaves_nothing(tmp_path):
    with Store(tmp_path) as store:
        run = store.start_run("run", {})
        store.write_result(*_result(run, "Kept", 4))
        row, steps, layers = _result(run, "Broken", 10)

        def exploding():
            yield from steps[:5]
            raise RuntimeError("simulator died")

        with pytest.raises(RuntimeError, match="simulator died"):
            store.write_result(row, exploding(), layers)
        assert [r["model"] for r in store.results()] == ["Kept"]
        assert {r["model"] for r in store.timesteps()} == {"Kept"}
        assert {r["model"] for r in store.layers()} == {"Kept"}

        def exploding_layers():
            yield layers[0]
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            store.write_result(row, steps, exploding_layers())
        assert [r["model"] for r in store.results()] == ["Kept"]
        assert len(store.timesteps()) == 4
    # a second connection sees the same, committed state
    with Store(tmp_path) as again:
        assert [r["model"] for r in again.results()] == ["Kept"]


WRITER = textwrap.dedent("""
    import sys
    from effmodel.store import Store
    sys.path.insert(0, sys.argv[2])
    from test_store_helpers import result
    store = Store(sys.argv[1])
    run = store.start_run("run", {})
    i = 0
    while True:
        store.write_result(*result(run, f"m{i}", 2000 + i))
        i += 1
        if i == 1:
            print("first", flush=True)
""")


def test_sigkill_leaves_only_complete_results(tmp_path):
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "test_store_helpers.py").write_text(
        "import json\n" + textwrap.dedent(_SOURCE_OF_RESULT))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), str(helpers)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "first"
        time.sleep(1.0)  # many more results, one of them surely in flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with Store(out) as store:
        results = store.results()
        assert len(results) >= 1
        steps: dict[str, int] = {}
        for r in store.timesteps():
            steps[r["model"]] = steps.get(r["model"], 0) + 1
        layers: dict[str, int] = {}
        for r in store.layers():
            layers[r["model"]] = layers.get(r["model"], 0) + 1
        assert set(steps) == set(layers) == {r["model"] for r in results}
        for r in results:
            assert steps[r["model"]] == r["duration"], r["model"]
            assert layers[r["model"]] == 2
        assert store.runs()[0]["status"] == "interrupted"  # never finished, and its process is gone


_SOURCE_OF_RESULT = '''
def result(run_id, model, duration, factor=1.5):
    row = {"run_id": run_id, "item_key": model + "-k", "model": model, "dataset": "mnist", "simulator": "sim",
           "duration": duration, "factor": factor}
    steps = [{"run_id": run_id, "model": model, "simulator": "sim", "t": t, "error": 1.0 / t, "synops_cumulative": 10.0 * t}
             for t in range(1, duration + 1)]
    layers = [{"run_id": run_id, "model": model, "simulator": "sim", "layer": n, "type": "dense"} for n in ("a", "b")]
    return row, steps, layers
'''


def test_csv_export_round_trip(tmp_path):
    with Store(tmp_path / "db") as store:
        run = store.start_run("run", {})
        store.write_result(*_result(run, "SmallCNN1", 3, factor=46.38))
        store.write_result(*_result(run, "MediumCNN2", 2, factor=0.1 + 0.2))
        (tmp_path / "csv").mkdir()
        res, ts = store.export_csv(run, tmp_path / "csv")
        stored = {r["model"]: r for r in store.results(run)}
    assert res.name == "results.csv" and ts.name == "timesteps.csv"
    assert not list((tmp_path / "csv").glob(".*.tmp"))
    with open(res, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == RESULT_COLUMNS
        rows = {r["model"]: r for r in reader}
    assert set(rows) == {"SmallCNN1", "MediumCNN2"}
    for model, row in rows.items():
        for col in RESULT_COLUMNS:
            value = stored[model][col]
            if value is None:
                assert row[col] == "", col
            elif isinstance(value, float):
                assert float(row[col]) == value, col  # exact: repr round-trips
            else:
                assert row[col] == str(value), col
    assert float(rows["MediumCNN2"]["factor"]) == 0.1 + 0.2
    with open(ts, newline="") as f:
        steps = list(csv.DictReader(f))
    assert tuple(steps[0]) == TIMESTEP_COLUMNS and len(steps) == 5
    assert [(s["model"], int(s["t"]), float(s["synops_cumulative"])) for s in steps if s["model"] == "SmallCNN1"] == [
        ("SmallCNN1", 1, 10.0), ("SmallCNN1", 2, 20.0), ("SmallCNN1", 3, 30.0)]
    with open(tmp_path / "csv" / "layers.csv", newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == LAYER_COLUMNS


def test_csv_export_creates_its_directory(tmp_path):
    """``export_csv(directory=...)`` into a folder that does not exist yet."""
    with Store(tmp_path / "db") as store:
        run = store.start_run("run", {})
        store.write_result(*_result(run, "SmallCNN1", 2))
        res, _ = store.export_csv(run, tmp_path / "new" / "csv")
    assert res.is_file()


def test_runs_record_paths_relative_to_the_output_folder(tmp_path):
    """A committed store names no folder of the machine that wrote it: the
    command and settings of a run keep paths relative to the output folder,
    and a store written with absolute paths is rewritten on open."""
    import json
    import sqlite3

    from effmodel.store import STORE_NAME, Store

    out, data = tmp_path / "reports" / "out", tmp_path / "shared" / "data"
    with Store(out) as store:
        store.start_run(f"effmodel run -o {out} --data-dir {data} --models SmallCNN1",
                        {"settings": {"output": str(out), "data_dir": str(data), "seed": 0}})
        (run,) = store.runs()
    assert run["command"] == "effmodel run -o . --data-dir ../../shared/data --models SmallCNN1"
    assert json.loads(run["settings_json"]) == {"settings": {"output": ".", "data_dir": "../../shared/data", "seed": 0}}
    with sqlite3.connect(out / STORE_NAME) as db:  # as older versions wrote it
        db.execute("UPDATE runs SET command = ?, settings_json = ?",
                   (f"effmodel run -o {out}", json.dumps({"settings": {"data_dir": str(data)}})))
    with Store(out) as store:
        (run,) = store.runs()
    assert run["command"] == "effmodel run -o ."
    assert json.loads(run["settings_json"]) == {"settings": {"data_dir": "../../shared/data"}}
