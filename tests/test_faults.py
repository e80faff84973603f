"""Fault injection (issue 9): ``effmodel run`` killed with SIGKILL at each
stage, then rerun, ends with the results of an uninterrupted run, recomputes
nothing that had finished and never holds two rows for one result.

The kills use the documented seam ``EFFMODEL_FAULT_KILL_AT=<point>[@<model>]``
(:mod:`effmodel.faults`).  One chain of real CLI runs into one output folder
covers every point, each run resuming the previous one:

====  ==========================  =============================================
run   killed at                   then
====  ==========================  =============================================
1     ``train@SmallCNN1``         TinyCNN stored; SmallCNN1 killed after fitting, before its cache entry exists
2     ``convert@SmallCNN1``       TinyCNN skipped; SmallCNN1 trained again, killed before conversion
(--)  truncate SmallCNN1's cache  the cached model.h5 cut in half by hand
3     ``simulate@SmallCNN1``      damaged cache entry detected and retrained; killed after the first batch
4     ``store-write@SmallCNN1``   killed inside the result transaction, before commit
5     ``csv-export``              SmallCNN1 stored; killed after results.csv, before timesteps.csv
6     (none)                      both skipped, nothing simulated, CSVs match the store
7     ``--force``, TinyCNN only   TinyCNN recomputed, its row replaced
====  ==========================  =============================================

The uninterrupted reference is two runs started at the same time into one
fresh folder (TinyCNN in one, SmallCNN1 in the other) with the same model
cache, which also checks that concurrent runs into one folder both land.  A
damaged store and a read-only output folder are one-line errors that change
nothing.  Tiny settings (200 training images, 1 epoch, 20 test images, T=10)
keep the whole file to about a minute and a half on an idle 2-core machine.
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
from pathlib import Path

import pytest

from effmodel.faults import ENV as KILL_ENV
from effmodel.store import STORE_NAME

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
MODELS = ("TinyCNN", "SmallCNN1")
T = 10
# differ between any two runs (wall times, also the phase times of issue 20)
VOLATILE = {"run_id", "created", "wall_seconds", "extra_json", "train_seconds", "convert_seconds", "simulate_seconds",
            "count_seconds"}


def effmodel(*args: str, kill_at: str | None = None, popen: bool = False):
    env = {k: v for k, v in os.environ.items() if k not in ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", KILL_ENV)}
    if kill_at:
        env[KILL_ENV] = kill_at
    cmd = [sys.executable, "-m", "effmodel.cli", *args]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


def run_args(out: Path, cache: Path, data_dir: Path, models: str = ",".join(MODELS)) -> list[str]:
    return ["run", "--simulator", "norse", "--models", models, "--num-test", "20", "--batch-size", "10",
            "--duration", str(T), "--epochs", "1", "--max-train-images", "200", "--norm-images", "100",
            "--data-dir", str(data_dir), "--cache-dir", str(cache), "--output", str(out)]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def snapshot(out: Path, cache: Path, proc: subprocess.CompletedProcess) -> dict:
    """What one run left behind: exit, messages, raw store rows, CSVs, cache."""
    with sqlite3.connect(out / STORE_NAME) as db:
        stored = db.execute("SELECT model, run_id, created FROM results ORDER BY model").fetchall()
        steps = dict(db.execute("SELECT model, COUNT(*) FROM timesteps GROUP BY model").fetchall())
        runs = [r[0] for r in db.execute("SELECT status FROM runs ORDER BY created, rowid")]
    return {
        "rc": proc.returncode, "stderr": proc.stderr, "stored": stored, "steps": steps, "runs": runs,
        "csv": sorted(r["model"] for r in csv_rows(out / "results.csv")) if (out / "results.csv").exists() else None,
        "csv_steps": len(csv_rows(out / "timesteps.csv")) if (out / "timesteps.csv").exists() else None,
        "cache": sorted(p.name for p in cache.iterdir()) if cache.exists() else [],
    }


@pytest.fixture(scope="module")
def chain(data_dir, tmp_path_factory):
    """Runs 1-6 of the table above; returns their snapshots."""
    root = tmp_path_factory.mktemp("faults")
    out, cache = root / "out", root / "cache"
    args = run_args(out, cache, data_dir)
    snaps = {}
    for name, kill in (("train", "train@SmallCNN1"), ("convert", "convert@SmallCNN1"), ("simulate", "simulate@SmallCNN1"),
                       ("store-write", "store-write@SmallCNN1"), ("csv-export", "csv-export"), ("final", None)):
        if name == "simulate":  # damage the cached SmallCNN1 model that run 2 trained
            (entry,) = [p for p in cache.iterdir() if not p.name.startswith(".") and "SmallCNN1" in (p / "meta.json").read_text()]
            h5 = entry / "model.h5"
            h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
        snaps[name] = snapshot(out, cache, effmodel(*args, kill_at=kill))
    # run 7: --force recomputes TinyCNN and replaces its row
    snaps["force"] = snapshot(out, cache, effmodel(*run_args(out, cache, data_dir, models="TinyCNN"), "--force"))
    return {"snaps": snaps, "out": out, "cache": cache, "root": root}


def _killed(snap: dict) -> None:
    assert snap["rc"] == -signal.SIGKILL, snap["stderr"][-2000:]


def _tiny_untouched(snaps: dict, name: str) -> None:
    """TinyCNN, stored by run 1, is never recomputed: skipped with one line, same row."""
    assert ("TinyCNN", *snaps["train"]["stored"][0][1:]) in snaps[name]["stored"]
    assert "TinyCNN: already stored in" in snaps[name]["stderr"] and "--force recomputes" in snaps[name]["stderr"]
    assert "TinyCNN: simulating" not in snaps[name]["stderr"]


def test_kill_during_training(chain):
    s = chain["snaps"]["train"]
    _killed(s)
    assert [m for m, *_ in s["stored"]] == ["TinyCNN"] and s["csv"] == ["TinyCNN"] and s["csv_steps"] == T
    entries = [c for c in s["cache"] if not c.startswith(".")]
    assert len(entries) == 1  # SmallCNN1's entry was never completed
    assert any(c.startswith(".tmp-") for c in s["cache"])  # its half-written folder, left by the kill


def test_kill_during_conversion(chain):
    s = chain["snaps"]["convert"]
    _killed(s)
    _tiny_untouched(chain["snaps"], "convert")
    assert "SmallCNN1: trained" in s["stderr"]
    entries = [c for c in s["cache"] if not c.startswith(".lock-")]  # training locks stay (effmodel/training.py)
    assert len(entries) == 2 and not any(c.startswith((".tmp-", ".ckpt-")) for c in entries)  # stale temp folder removed
    assert [m for m, *_ in s["stored"]] == ["TinyCNN"]


def test_kill_mid_simulation_after_a_truncated_cache_entry(chain):
    s = chain["snaps"]["simulate"]
    _killed(s)
    _tiny_untouched(chain["snaps"], "simulate")
    assert "SmallCNN1: the cached model" in s["stderr"] and "truncated or damaged; training it again" in s["stderr"]
    assert "SmallCNN1: simulating" in s["stderr"] and "10/20 images" in s["stderr"]
    assert [m for m, *_ in s["stored"]] == ["TinyCNN"] and s["csv"] == ["TinyCNN"]


def test_kill_inside_the_store_transaction(chain):
    s = chain["snaps"]["store-write"]
    _killed(s)
    _tiny_untouched(chain["snaps"], "store-write")
    assert "SmallCNN1: cached model" in s["stderr"]
    assert [m for m, *_ in s["stored"]] == ["TinyCNN"] and s["steps"] == {"TinyCNN": T}  # rolled back whole


def test_kill_during_csv_export(chain):
    s = chain["snaps"]["csv-export"]
    _killed(s)
    _tiny_untouched(chain["snaps"], "csv-export")
    assert [m for m, *_ in s["stored"]] == list(sorted(MODELS)) and s["steps"] == {m: T for m in MODELS}
    assert s["csv"] == sorted(MODELS)  # results.csv was replaced whole before the kill


def test_rerun_after_everything_recomputes_nothing(chain):
    s = chain["snaps"]["final"]
    assert s["rc"] == 0, s["stderr"][-2000:]
    for m in MODELS:
        assert f"{m}: already stored in {chain['out']}" in s["stderr"]
    assert "simulating" not in s["stderr"] and "cached model" not in s["stderr"] and ": trained" not in s["stderr"]
    assert s["stored"] == chain["snaps"]["csv-export"]["stored"]  # no row rewritten
    assert s["csv"] == sorted(MODELS) and s["csv_steps"] == 2 * T
    assert s["runs"] == ["interrupted"] * 5 + ["complete"]  # each killed run marked when the next one opened the store


def test_force_recomputes_and_replaces(chain):
    before, s = chain["snaps"]["final"], chain["snaps"]["force"]
    assert s["rc"] == 0, s["stderr"][-2000:]
    assert "TinyCNN: cached model" in s["stderr"] and "already stored" not in s["stderr"]
    (old_tiny,) = [r for r in before["stored"] if r[0] == "TinyCNN"]
    (new_tiny,) = [r for r in s["stored"] if r[0] == "TinyCNN"]
    assert new_tiny[1] != old_tiny[1]  # a row of the new run replaced the old one
    assert [r for r in s["stored"] if r[0] != "TinyCNN"] == [r for r in before["stored"] if r[0] != "TinyCNN"]
    assert s["steps"] == {m: T for m in MODELS} and s["csv"] == sorted(MODELS) and s["csv_steps"] == 2 * T


def test_failed_item_writes_nothing(chain, data_dir, tmp_path):
    """An item that fails after the store was opened (SmallCNN2 needs CIFAR-10,
    absent from this data folder): a fresh folder is left empty, an existing
    one keeps its results and CSVs byte for byte."""
    mnist_only = tmp_path / "data"
    mnist_only.mkdir()
    (mnist_only / "mnist").symlink_to(data_dir / "mnist")
    fresh = tmp_path / "fresh"
    p = effmodel(*run_args(fresh, chain["cache"], mnist_only, models="SmallCNN2"))
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert not fresh.exists()
    existing = tmp_path / "existing"
    shutil.copytree(chain["out"], existing)
    before = {n: _sha(existing / n) for n in ("results.csv", "timesteps.csv", "layers.csv")}
    p = effmodel(*run_args(existing, chain["cache"], mnist_only, models="SmallCNN2"))
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert {n: _sha(existing / n) for n in before} == before
    with sqlite3.connect(existing / STORE_NAME) as db:
        assert sorted(r[0] for r in db.execute("SELECT model FROM results")) == sorted(MODELS)
        assert db.execute("SELECT status FROM runs ORDER BY created DESC, rowid DESC LIMIT 1").fetchone() == ("failed",)


@pytest.fixture(scope="module")
def uninterrupted(chain, data_dir):
    """The reference: two concurrent runs into one fresh folder, same cache."""
    out = chain["root"] / "uninterrupted"
    procs = [effmodel(*run_args(out, chain["cache"], data_dir, models=m), popen=True) for m in MODELS]
    done = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    return out, done


def test_concurrent_runs_into_one_folder_both_land(uninterrupted):
    out, done = uninterrupted
    for rc, _, err in done:
        assert rc == 0, err[-2000:]
    with sqlite3.connect(out / STORE_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert sorted(db.execute("SELECT model FROM results").fetchall()) == [(m,) for m in sorted(MODELS)]
        assert [r[0] for r in db.execute("SELECT status FROM runs")] == ["complete", "complete"]
    assert sorted(r["model"] for r in csv_rows(out / "results.csv")) == sorted(MODELS)


def _comparable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in rows),
                  key=lambda r: tuple(r.get(k, "") for k in ("model", "simulator", "t", "layer")))


@pytest.mark.parametrize("name", ["results.csv", "timesteps.csv", "layers.csv"])
def test_interrupted_chain_ends_like_an_uninterrupted_run(chain, uninterrupted, name):
    got, want = csv_rows(chain["out"] / name), csv_rows(uninterrupted[0] / name)
    assert len(got) == len(want) > 0
    assert _comparable(got) == _comparable(want)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_damaged_store_is_one_line_and_never_overwritten(data_dir, tmp_path):
    from effmodel.store import Store

    out = tmp_path / "damaged"
    with Store(out) as store:
        run = store.start_run("earlier", {})
        for i in range(30):
            store.write_result({"run_id": run, "item_key": f"k{i}", "model": f"m{i}", "simulator": "norse"},
                               [{"run_id": run, "model": f"m{i}", "simulator": "norse", "t": t, "error": 0.5,
                                 "synops_cumulative": 1.0} for t in range(1, 101)], [])
    db = out / STORE_NAME
    good = db.read_bytes()
    mid = len(good) // 2 // 4096 * 4096
    assert mid >= 4 * 4096
    db.write_bytes(good[:mid] + b"\0" * 8192 + good[mid + 8192:])  # two data pages zeroed, header and schema intact
    (out / "results.csv").write_text("precious\n")
    before = {p.name: _sha(p) for p in out.iterdir()}
    p = effmodel(*run_args(out, tmp_path / "cache", data_dir))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("effmodel: error: the results store") and "damaged" in lines[0], p.stderr
    assert {q.name: _sha(q) for q in out.iterdir()} == before


def test_read_only_output_folder_is_one_line(data_dir, tmp_path, make_read_only):
    out = tmp_path / "readonly"
    out.mkdir()
    undo = make_read_only(out)
    try:
        p = effmodel(*run_args(out, tmp_path / "cache", data_dir))
    finally:
        undo()
    assert p.returncode != 0 and "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [f"effmodel: error: the output folder {out} is not writable "
                     f"({'Operation not permitted' if os.geteuid() == 0 else 'Permission denied'}); choose another --output"]
    assert list(out.iterdir()) == []
