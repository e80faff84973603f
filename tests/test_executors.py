"""The local executors: ``--executor local --jobs N`` and its guarantees.

The results of a sweep must not depend on how it was computed: four tiny
MNIST items (a few hundred training images, a few test images, short T,
Norse) computed by two worker processes equal those computed in the driver
process one after the other.  A worker process that dies (SIGKILL, as an OOM
kill does) is retried a bounded number of times, is charged to its own item
only, and the sweep goes on.  Bad executor options are one-line errors that
write nothing, and the CLI never imports Ray unless ``--executor ray`` runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from effmodel.executors import ExecutorSettings, WorkItem, compute_in_worker
from effmodel.pipeline import RunSettings
from effmodel.sweep import build_spec

REPO = Path(__file__).resolve().parent.parent
TINY = ["--simulator", "norse", "--datasets", "mnist", "--bundle-types", "I,II", "--bundles", "1", "--dense", "1,2",
        "--widths", "0.5", "--epochs", "1", "--max-train-images", "300", "--num-test", "20", "--duration", "10",
        "--batch-size", "20", "--max-corr", "1"]  # four networks cannot decorrelate depth and size: no bound


@pytest.fixture(scope="module")
def cache(model_cache) -> Path:
    return model_cache


def _env(cache: Path, **extra: str) -> dict[str, str]:
    # EFFMODEL_NUM_THREADS (set per pytest-xdist worker, see conftest.py) would cap --jobs 2 at one worker.
    drop = ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", "EFFMODEL_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {"EFFMODEL_CACHE_DIR": str(cache), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"} | extra


def _sweep(out: Path, cache: Path, data_dir: Path, *extra: str, env: dict[str, str] | None = None):
    return subprocess.run([sys.executable, "-m", "effmodel.cli", "sweep", *TINY, "--data-dir", str(data_dir),
                           "-o", str(out), *extra], env=env or _env(cache), cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def reference(jobs1_sweep) -> Path:
    """The four items computed by ``--executor local --jobs 1``: in the driver, one
    after the other (once per session, shared with the Ray tests: conftest.py)."""
    out, stdout = jobs1_sweep(TINY)
    assert "4 run, 0 already stored, 0 failed" in stdout
    return out


@pytest.mark.slow
class TestLocalPool:
    """``--executor local --jobs 2``.  Each slow test of this module is a class
    of its own, so that ``--dist loadscope`` can give them to different
    workers; the reference is computed once either way (conftest.py)."""

    def test_local_jobs_2_equals_jobs_1(self, reference, cache, data_dir, tmp_path, same_sweep_as):
        r = _sweep(tmp_path, cache, data_dir, "--executor", "local", "--jobs", "2")
        assert r.returncode == 0, r.stderr[-3000:]
        assert "4 run, 0 already stored, 0 failed" in r.stdout
        same_sweep_as(tmp_path, reference)
        # Two items were in flight at once: the second started before the first finished.
        lines = [ln for ln in r.stderr.splitlines() if ": started" in ln or ": done in" in ln]
        assert lines[0].endswith(": started") and lines[1].endswith(": started"), lines


@pytest.mark.slow
class TestLocalPoolWorkerKilled:
    """A worker process that dies (SIGKILL) mid-item."""

    def test_a_worker_killed_every_time_fails_its_item_only(self, reference, cache, data_dir, tmp_path, stored_tables):
        _rows, _series = stored_tables
        victim = "sw-mnist-I1-d1-c0.5-u0.5-s0"
        env = _env(cache, EFFMODEL_FAULT_KILL_AT=f"simulate@{victim}")  # the worker SIGKILLs itself mid-simulation
        r = _sweep(tmp_path, cache, data_dir, "--executor", "local", "--jobs", "2", "--max-retries", "0", env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "3 run, 0 already stored, 1 failed" in r.stdout, r.stdout + r.stderr[-3000:]
        assert f"failed {victim}: its worker process died 1 time(s) (--max-retries 0)" in r.stdout
        expected = [row for row in _rows(reference) if row[1] != victim]
        assert _rows(tmp_path) == expected  # the item beside it in the pool was rerun, not failed
        # Without the fault, a rerun computes only the failed item.
        r = _sweep(tmp_path, cache, data_dir, "--executor", "local", "--jobs", "1")
        assert "1 run, 3 already stored, 0 failed" in r.stdout, r.stdout + r.stderr[-3000:]
        assert _rows(tmp_path) == _rows(reference)


@pytest.mark.parametrize("args, message", [
    (["--executor", "dask"], "--executor must be one of local, ray, got 'dask'"),
    (["--jobs", "0"], "--jobs must be a positive number of workers, got 0"),
    (["--ray-address", "10.0.0.1:6379"], "--ray-address and --gpus-per-item need --executor ray"),
    (["--executor", "ray", "--cpus-per-item", "0"], "--cpus-per-item must be positive, got 0"),
    (["--executor", "ray", "--max-retries", "-1"], "--max-retries must be >= 0, got -1"),
    (["--widths", "0"], "--widths expects positive numbers"),
    (["--bundle-types", "III"], "--bundle-types expects I and/or II"),
])
def test_bad_executor_options_are_one_line_errors_that_write_nothing(run_effmodel, tmp_path, args, message):
    out = tmp_path / "out"
    r = run_effmodel("sweep", *TINY, "-o", str(out), *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"effmodel: error: {message}"), r.stderr
    assert not out.exists()


def test_bad_run_executor_option_is_one_line(run_effmodel, tmp_path):
    out = tmp_path / "out"
    r = run_effmodel("run", "--models", "SmallCNN1", "--executor", "local", "--jobs", "-2", "-o", str(out))
    assert r.returncode == 2 and r.stderr.strip() == "effmodel: error: --jobs must be a positive number of workers, got -2"
    assert not out.exists()


def test_cli_does_not_import_ray_unless_the_ray_executor_runs(tmp_path):
    code = (
        "import sys\n"
        "from effmodel.cli import main\n"
        "for argv in (['--help'], ['sweep', '--help'], ['run', '--help'], ['sweep', '--dry-run', '--datasets', 'mnist']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'tensorflow', 'torch')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_missing_data_dir_on_a_node_names_the_node(tmp_path):
    spec = build_spec("mnist", "I", 1, 1, 0.5)
    missing = tmp_path / "not-here"
    item = WorkItem(spec=spec, settings=RunSettings(simulator="norse", data_dir=missing), run_id="r", key="k")
    out = compute_in_worker(item, node="node-b")
    assert not out.ok and out.result is None and out.node == "node-b"
    assert out.error == (f"data directory {missing} does not exist on node node-b; --data-dir must name a folder "
                         "holding mnist/ and cifar10/ at the same path on every node")


def test_local_workers_are_capped_at_the_cores_available(monkeypatch):
    monkeypatch.setenv("EFFMODEL_NUM_THREADS", "3")  # available_cores() honours it
    assert ExecutorSettings(jobs=8).local_workers() == 3
    assert ExecutorSettings(jobs=2).local_workers() == 2
    assert ExecutorSettings().local_workers() == 1


@pytest.mark.slow
class TestRunWithTwoWorkers:
    """``effmodel run --jobs 2`` stores what the in-process run stores, and resumes the same way."""

    def test_run_with_two_workers_equals_run_in_process(self, cache, data_dir, tmp_path, stored_tables):
        _rows, _series = stored_tables
        args = ["--simulator", "norse", "--models", "SmallCNN1,DeepCNN1", "--epochs", "1", "--max-train-images", "300",
                "--num-test", "20", "--duration", "10", "--batch-size", "20", "--data-dir", str(data_dir)]

        def run(out, *extra):
            return subprocess.run([sys.executable, "-m", "effmodel.cli", "run", *args, "-o", str(out), *extra],
                                  env=_env(cache), cwd=REPO, capture_output=True, text=True, timeout=600)

        one, two = tmp_path / "jobs1", tmp_path / "jobs2"
        for out, extra in ((one, ()), (two, ("--jobs", "2"))):
            r = run(out, *extra)
            assert r.returncode == 0, r.stderr[-3000:]
        assert len(_rows(one)) == 2 and _rows(two) == _rows(one)
        assert _series(two) == _series(one)
        r = run(two, "--jobs", "2")  # everything stored: nothing is computed again
        assert r.returncode == 0 and r.stderr.count("already stored, skipped") == 2, r.stderr[-3000:]
        assert _rows(two) == _rows(one)
