"""Resume and idempotence of the results store (issue 9), without training.

A result's identity is (item_key, simulator): writing it again, from any run,
replaces it; stores written by older versions (fewer columns, duplicate rows)
open and read one row per identity, the newest; runs whose process died read
as ``interrupted``; a damaged store or an unwritable folder is a one-line
error that leaves the folder as it was; concurrent writers both land.  The
Makefile's data-folder fallback is checked here too.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from effmodel.store import RESULT_COLUMNS, STORE_NAME, Store, StoreError

REPO = Path(__file__).resolve().parent.parent

# results columns of a store written before this change (effmodel 4a9202e):
# a fixed snapshot, so the migration is tested against a real older layout.
OLD_RESULT_COLUMNS = (
    "run_id", "item_key", "model", "dataset", "simulator", "cost_model", "family", "seed", "epochs",
    "depth", "conv_layers", "dense_layers", "params", "neurons",
    "ann_accuracy", "ann_macs", "ann_synapses", "ann_flops", "ann_flops_snntoolbox", "ann_flops_simulator",
    "snn_accuracy", "duration", "num_test", "batch_size", "normalisation_percentile",
    "threshold_tolerance", "threshold_step", "synops_at_threshold", "synops_total", "synops_input_layer",
    "neuron_updates_total", "mean_spike_rate", "total_costs", "snn_costs", "factor",
    "wall_seconds", "created", "spec_json", "extra_json",
)


def result(run_id: str, model: str, key: str, duration: int, simulator: str = "sim", factor: float = 1.0):
    row = {"run_id": run_id, "item_key": key, "model": model, "dataset": "mnist", "simulator": simulator,
           "duration": duration, "factor": factor}
    steps = [{"run_id": run_id, "model": model, "simulator": simulator, "t": t, "error": 0.5, "synops_cumulative": 7.0 * t}
             for t in range(1, duration + 1)]
    layers = [{"run_id": run_id, "model": model, "simulator": simulator, "layer": f"l{i}", "neurons": 4, "spikes": duration}
              for i in range(2)]
    return row, steps, layers


def raw_count(directory: Path, table: str) -> int:
    with sqlite3.connect(directory / STORE_NAME) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_rewriting_an_item_replaces_it_across_runs(tmp_path):
    with Store(tmp_path) as store:
        first = store.start_run("first", {})
        store.write_result(*result(first, "M", "k1", duration=5, factor=2.0))
        store.write_result(*result(first, "N", "k2", duration=4))
        second = store.start_run("second", {})
        store.write_result(*result(second, "M", "k1", duration=3, factor=9.0))
        # the same item in another simulator is another result
        store.write_result(*result(second, "M", "k1", duration=2, simulator="other"))
        assert store.has_result("k1", "sim") and store.has_result("k1", "other") and not store.has_result("k3", "sim")
        got = {(r["model"], r["simulator"]): (r["run_id"], r["factor"]) for r in store.results()}
        assert got == {("M", "sim"): (second, 9.0), ("N", "sim"): (first, 1.0), ("M", "other"): (second, 1.0)}
        steps = [(r["run_id"], r["model"], r["simulator"]) for r in store.timesteps()]
        assert steps.count((second, "M", "sim")) == 3 and steps.count((first, "M", "sim")) == 0
        assert len(store.layers()) == 2 * 3
        assert [r["model"] for r in store.results(first)] == ["N"]  # M of the first run was replaced
    # not just hidden: the replaced rows are gone from the tables (3 + 4 + 2 steps)
    assert raw_count(tmp_path, "results") == 3
    assert raw_count(tmp_path, "timesteps") == 3 + 4 + 2
    assert raw_count(tmp_path, "layers") == 6


def _old_store(directory: Path) -> None:
    """A store as an older effmodel wrote it: no pid/host, fewer result
    columns, and the same item stored twice by two runs."""
    db = sqlite3.connect(directory / STORE_NAME)
    db.executescript(f"""
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, created TEXT, finished TEXT, status TEXT, command TEXT, settings_json TEXT);
        CREATE TABLE results ({', '.join(OLD_RESULT_COLUMNS)}, PRIMARY KEY (run_id, model, simulator));
        CREATE TABLE timesteps (run_id, model, simulator, t, error, synops_cumulative, PRIMARY KEY (run_id, model, simulator, t));
        CREATE TABLE layers (run_id, model, simulator, layer, type, neurons, spikes, synops, spike_rate, rate_act_corr,
                             PRIMARY KEY (run_id, model, simulator, layer));
    """)
    rows = [("r1", "kA", "A", "2025-01-01T10:00:00", 0.5, 3), ("r2", "kA", "A", "2025-02-01T10:00:00", 0.75, 2),
            ("r1", "kB", "B", "2025-01-01T10:05:00", 0.25, 4)]
    for run_id, key, model, created, acc, duration in rows:
        db.execute("INSERT INTO results (run_id, item_key, model, simulator, created, snn_accuracy, duration) "
                   "VALUES (?, ?, ?, 'sim', ?, ?, ?)", (run_id, key, model, created, acc, duration))
        for t in range(1, duration + 1):
            db.execute("INSERT INTO timesteps VALUES (?, ?, 'sim', ?, 0.1, ?)", (run_id, model, t, float(t)))
        db.execute("INSERT INTO layers (run_id, model, simulator, layer, spikes) VALUES (?, ?, 'sim', 'c', ?)",
                   (run_id, model, duration))
    db.execute("INSERT INTO runs VALUES ('r1', '2025-01-01T10:00:00', NULL, 'running', 'old', '{}')")
    db.commit()
    db.close()


def test_old_store_with_duplicates_opens_and_reads_newest(tmp_path):
    _old_store(tmp_path)
    with Store(tmp_path) as store:
        res = {r["model"]: r for r in store.results()}
        assert sorted(res) == ["A", "B"]
        assert (res["A"]["run_id"], res["A"]["snn_accuracy"]) == ("r2", 0.75)  # the newer of the two
        assert set(res["A"]) >= set(RESULT_COLUMNS)  # migrated: every current column reads back
        steps = [(r["run_id"], r["model"]) for r in store.timesteps()]
        assert steps == [("r1", "B")] * 4 + [("r2", "A")] * 2
        assert sorted((r["run_id"], r["model"]) for r in store.layers()) == [("r1", "B"), ("r2", "A")]
        assert store.runs()[0]["status"] == "running"  # no pid recorded: nothing to judge it by
        results_csv, _ = store.export_csv()
        with open(results_csv) as f:
            assert sorted((r["model"], r["run_id"]) for r in csv.DictReader(f)) == [("A", "r2"), ("B", "r1")]
        # writing the duplicated item again leaves exactly one stored row for it
        new = store.start_run("new", {})
        store.write_result(*result(new, "A", "kA", duration=1))
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        assert db.execute("SELECT run_id FROM results WHERE item_key = 'kA'").fetchall() == [(new,)]
        assert db.execute("SELECT COUNT(*) FROM timesteps WHERE model = 'A'").fetchone()[0] == 1
        cols = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
        assert {"pid", "host"} <= cols


def test_a_killed_run_reads_as_interrupted(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from effmodel.store import Store
        s = Store({str(tmp_path)!r})
        print(s.start_run("doomed", {{}}), os.getpid(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    doomed, dead_pid = p.stdout.split()
    with Store(tmp_path) as store:
        alive = store.start_run("alive", {})  # this process: still running
        # the same dead pid on another host: nothing this host can judge
        store._db.execute("INSERT INTO runs (run_id, status, pid, host) VALUES ('far', 'running', ?, 'another-host')",
                          (int(dead_pid),))
    with Store(tmp_path) as store:
        status = {r["run_id"]: r["status"] for r in store.runs()}
    assert status == {doomed: "interrupted", alive: "running", "far": "running"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_damaged_store_is_one_line_and_left_untouched(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / STORE_NAME).write_bytes(b"not a database " * 500)
    truncated = tmp_path / "truncated"
    with Store(truncated) as store:
        run = store.start_run("x", {})
        for i in range(40):  # enough pages that cutting the file loses some
            store.write_result(*result(run, f"m{i}", f"k{i}", duration=50))
    db = truncated / STORE_NAME
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    for folder in (garbage, truncated):
        before = {p.name: _sha(p) for p in folder.iterdir()}
        with pytest.raises(StoreError) as err:
            Store(folder)
        msg = str(err.value)
        assert "\n" not in msg and str(folder / STORE_NAME) in msg and "damaged" in msg
        assert {p.name: _sha(p) for p in folder.iterdir()} == before  # nothing written, nothing added


def test_read_only_folder_is_one_line(tmp_path, make_read_only):
    with Store(tmp_path / "out") as store:
        store.write_result(*result(store.start_run("x", {}), "M", "k", duration=2))
    before = {p.name: _sha(p) for p in (tmp_path / "out").iterdir() if p.is_file()}
    undo = make_read_only(tmp_path / "out")
    try:
        with pytest.raises(StoreError) as err:
            Store(tmp_path / "out")
        assert "not writable" in str(err.value) and "\n" not in str(err.value)
    finally:
        undo()
    assert {p.name: _sha(p) for p in (tmp_path / "out").iterdir() if p.is_file()} == before


WRITER = textwrap.dedent("""
    import sys
    from effmodel.store import Store
    out, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Store(out) as store:
        run = store.start_run(name, {})
        for i in range(n):
            row = {"run_id": run, "item_key": f"{name}-{i}", "model": f"{name}-{i}", "simulator": "sim", "duration": 3}
            steps = [{"run_id": run, "model": f"{name}-{i}", "simulator": "sim", "t": t, "error": 0.0,
                      "synops_cumulative": 1.0} for t in (1, 2, 3)]
            with store.locked():
                store.write_result(row, steps, [])
                store.export_csv()
        store.finish_run(run)
""")


def test_concurrent_writers_into_one_folder_both_land(tmp_path):
    n = 25
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name, str(n)], stderr=subprocess.PIPE, text=True)
             for name in ("left", "right")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    with Store(tmp_path) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(store.results()) == 2 * n
        assert len(store.timesteps()) == 2 * n * 3
        assert {r["status"] for r in store.runs()} == {"complete"}
    with open(tmp_path / "results.csv") as f:  # the last export saw both writers' results
        assert sorted(r["model"] for r in csv.DictReader(f)) == sorted(f"{w}-{i}" for w in ("left", "right") for i in range(n))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary CSV left behind


# --- the Makefile's data folder -------------------------------------------------


@pytest.fixture
def makefile_copy(tmp_path):
    """The Makefile and what ``make -n run`` needs, in ``<tmp>/repo`` with no ``<tmp>/shared``."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Makefile", "requirements.txt", "pyproject.toml"):
        shutil.copy(REPO / name, repo / name)
    for pyproject in (REPO / "plugins").glob("*/pyproject.toml"):
        (repo / pyproject.parent.relative_to(REPO)).mkdir(parents=True)
        shutil.copy(pyproject, repo / pyproject.relative_to(REPO))
    return repo


def _make_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "EFFMODEL_DATA_DIR", "MAKEFLAGS", "MAKELEVEL")}


def _run_line(repo: Path, *args: str) -> str:
    p = subprocess.run(["make", "-n", "run", *args], cwd=repo, capture_output=True, text=True, env=_make_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    (line,) = [ln for ln in p.stdout.splitlines() if "effmodel run" in ln]
    return line


def test_makefile_without_shared_data_uses_the_download(makefile_copy):
    line = _run_line(makefile_copy)
    assert "--data-dir" not in line and "--output out/reference" in line


def test_makefile_uses_shared_data_when_it_exists(makefile_copy):
    data = makefile_copy.parent / "shared" / "data"
    data.mkdir(parents=True)
    assert f"--data-dir {data}" in _run_line(makefile_copy)


def test_makefile_explicit_missing_data_dir_is_one_line(makefile_copy, tmp_path):
    missing = tmp_path / "no-such-data"
    assert f"--data-dir {missing}" in _run_line(makefile_copy, f"DATA_DIR={missing}")
    # and for real: make calls effmodel, which refuses it in one line
    bin_dir = makefile_copy / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "effmodel").symlink_to(Path(sys.executable).parent / "effmodel")
    (makefile_copy / ".venv" / ".installed").touch()
    p = subprocess.run(["make", "run", f"DATA_DIR={missing}", f"OUT={tmp_path / 'out'}"], cwd=makefile_copy,
                       capture_output=True, text=True, env=_make_env(), timeout=120)
    assert p.returncode != 0
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("effmodel:")]
    assert errors == [f"effmodel: error: data directory {missing} does not exist; pass --data-dir or set "
                      "EFFMODEL_DATA_DIR to a folder holding mnist/ and cifar10/ (see README)"], p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "out").exists()
