"""Shared fixtures for effmodel's core tests.

``data_dir``: the real MNIST/CIFAR-10 folder, from ``EFFMODEL_DATA_DIR`` or
``<repo>/../shared/data``; tests that need it are skipped (with the reason)
when it is missing.

``fresh_plugins``: a clean plugin manager for one test, with the
``EFFMODEL_*`` plugin variables removed; it is reset again afterwards so the
next test reloads the installed plugins from scratch.

``run_effmodel``: run ``python -m effmodel.cli ARGS`` in a subprocess with a
clean plugin environment and return the ``CompletedProcess``.

``model_cache``: the trained-model cache, ``EFFMODEL_CACHE_DIR`` or one
folder for the whole session (every xdist worker).  ``jobs1_sweep(args)``:
an ``effmodel sweep ARGS --executor local --jobs 1`` computed once per
session with that cache, the reference the executor and Ray tests compare
with.

Under pytest-xdist (``make test`` runs ``-n auto --dist loadscope``: each
module, or class, runs on one worker, so a module-scoped fixture such as a
chain of CLI runs or a Ray cluster is built once):

* each worker gets its share of the cores for torch, TensorFlow and the
  OpenMP/BLAS pools (one thread each with two workers on two cores), set
  before either framework is imported and inherited by the processes a test
  starts: two threads per process on two busy cores made torch 5-10x slower;
* ``-n auto`` means the cores this process may use (affinity and cgroup
  quota, :func:`effmodel.threads.available_cores`), at most 4: every worker
  imports TensorFlow and torch, and so do the processes its tests start.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PLUGIN_ENV = ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", "EFFMODEL_TRACE_HOOKS", "EFFMODEL_PREFER")
MAX_AUTO_WORKERS = 4


def _share_cores_between_xdist_workers() -> None:
    """In an xdist worker, size every thread pool to this worker's share of the
    cores (environment variables, read when TensorFlow and torch start; a
    developer's own settings win).  Runs when this conftest is imported, before
    any test module imports a framework."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if "PYTEST_XDIST_WORKER" not in os.environ or workers < 2:
        return
    from effmodel.threads import available_cores, configure_threads

    os.environ.setdefault("EFFMODEL_NUM_THREADS", str(max(1, available_cores() // workers)))
    configure_threads(available_cores())  # reads EFFMODEL_NUM_THREADS; sets what a run sets, only where unset


_share_cores_between_xdist_workers()


def pytest_xdist_auto_num_workers(config):
    from effmodel.threads import available_cores

    return min(available_cores(), MAX_AUTO_WORKERS)


def _data_dir() -> Path:
    return Path(os.environ.get("EFFMODEL_DATA_DIR") or SHARED / "data")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if not (d / "mnist").is_dir() or not (d / "cifar10").is_dir():
        pytest.skip(f"real data not found at {d} (needs mnist/ and cifar10/); set EFFMODEL_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def table2_path() -> Path:
    from effmodel.paths import table2_csv

    for p in (SHARED / "reference" / "table2.csv", table2_csv()):
        if p.is_file():
            return p
    pytest.skip("table2.csv not found in ../shared/reference or data/")


def _session_root(tmp_path_factory) -> Path:
    """A folder shared by every xdist worker of this session (the base temp
    folder itself without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@contextlib.contextmanager
def _session_lock(path: Path):
    """Held by one process of the session at a time (an flock on ``path``)."""
    import fcntl

    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """``EFFMODEL_CACHE_DIR`` (the developer's, or CI's), else one folder for
    the whole session; its entries are written atomically, so workers may
    share it."""
    own = os.environ.get("EFFMODEL_CACHE_DIR")
    if own:
        return Path(own)
    d = _session_root(tmp_path_factory) / "models"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def jobs1_sweep(tmp_path_factory, model_cache, data_dir):
    """``jobs1_sweep(args)`` -> ``(output folder, stdout)`` of ``effmodel sweep
    ARGS --executor local --jobs 1`` (every item in the driver, one after the
    other) with ``model_cache``, in a subprocess.  Computed once per session
    for each distinct ``args``: the first xdist worker to ask computes it under
    a file lock, the others wait for it.  Read it, never write into it."""
    root = _session_root(tmp_path_factory)

    def get(args: list[str]) -> tuple[Path, str]:
        key = hashlib.sha256("\0".join(args).encode()).hexdigest()[:12]
        out, stdout = root / f"sweep-jobs1-{key}", root / f"sweep-jobs1-{key}.stdout"
        with _session_lock(root / f"sweep-jobs1-{key}.lock"):
            if not stdout.is_file():
                shutil.rmtree(out, ignore_errors=True)
                drop = (*PLUGIN_ENV, "EFFMODEL_NUM_THREADS", "RAY_ADDRESS")
                env = {k: v for k, v in os.environ.items() if k not in drop}
                env |= {"EFFMODEL_CACHE_DIR": str(model_cache), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
                r = subprocess.run([sys.executable, "-m", "effmodel.cli", "sweep", *args, "--data-dir", str(data_dir),
                                    "-o", str(out), "--executor", "local", "--jobs", "1"],
                                   env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
                assert r.returncode == 0, r.stderr[-3000:]
                stdout.write_text(r.stdout)
        return out, stdout.read_text()

    return get


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager with nothing loaded yet and no EFFMODEL_* plugin variables."""
    from effmodel import plugins

    for var in PLUGIN_ENV:
        monkeypatch.delenv(var, raising=False)
    plugins._reset_for_tests()
    try:
        yield plugins
    finally:
        plugins._reset_for_tests()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV}
    env.update(extra)
    return env


@pytest.fixture
def clean_env():
    """``clean_env(**extra)``: os.environ without EFFMODEL_* plugin variables, plus ``extra``."""
    return _clean_env


@pytest.fixture
def run_effmodel():
    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "effmodel.cli", *args],
            capture_output=True, text=True, timeout=timeout, env=env or _clean_env(), cwd=REPO,
        )

    return run


@pytest.fixture
def make_read_only():
    """``make_read_only(folder)``: make ``folder`` unwritable, also for root
    (``chattr +i``), and return an undo; skips where that cannot be done."""
    import shutil

    def make(folder: Path):
        if os.geteuid() != 0:
            folder.chmod(0o555)
            return lambda: folder.chmod(0o755)
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("running as root without a working chattr: cannot make a folder read-only")
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)

    return make


# The result columns compared between executors (a duplicate row would show).
COMPARED_RESULT_COLUMNS = ("item_key", "model", "dataset", "simulator", "seed", "params", "ann_accuracy", "snn_accuracy",
                           "synops_total", "synops_at_threshold", "threshold_step", "ann_flops", "factor", "mean_spike_rate")


@pytest.fixture
def stored_tables():
    """``rows(out)``, ``series(out)``: the raw stored results (compared columns)
    and per-step/per-layer series of the store in ``out``, sorted."""
    import sqlite3

    def rows(out: Path) -> list[tuple]:
        with sqlite3.connect(out / "effmodel.sqlite") as db:
            return sorted(db.execute(f"SELECT {', '.join(COMPARED_RESULT_COLUMNS)} FROM results").fetchall())

    def series(out: Path) -> list[tuple]:
        with sqlite3.connect(out / "effmodel.sqlite") as db:
            ts = db.execute("SELECT model, t, error, synops_cumulative FROM timesteps ORDER BY model, t").fetchall()
            ly = db.execute("SELECT model, layer, spikes, synops FROM layers ORDER BY model, layer").fetchall()
        return ts + ly

    return rows, series


@pytest.fixture
def same_sweep_as(stored_tables):
    """``same_sweep_as(out, reference)``: the sweep stored in ``out`` equals the
    four-item reference sweep, row for row and series for series."""
    rows, series = stored_tables

    def check(out: Path, reference: Path) -> None:
        expected = rows(reference)
        assert len(expected) == 4 and len({row[0] for row in expected}) == 4
        assert rows(out) == expected
        assert series(out) == series(reference)

    return check


@pytest.fixture
def tiny_dataset_plugins(fresh_plugins):
    """``register(n)``: registers :class:`effmodel.testing.TinyDataset` of ``n`` images (plugin
    ``tinydata``, needs the numpy simulator) and returns the plugin module; unregistered afterwards."""
    from effmodel import hookimpl
    from effmodel.testing import TinyDataset

    pytest.importorskip("effmodel_numpysim")

    def register(n: int):
        class TinyData:
            @hookimpl
            def register_datasets(self, register):
                register(TinyDataset(n))

        fresh_plugins.register_plugin(TinyData(), name="tinydata")
        return fresh_plugins

    try:
        yield register
    finally:
        if fresh_plugins.pm.has_plugin("tinydata"):
            fresh_plugins.unregister_plugin("tinydata")
