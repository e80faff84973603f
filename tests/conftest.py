"""Shared fixtures for effmodel's core tests.

``data_dir``: the real MNIST/CIFAR-10 folder, from ``EFFMODEL_DATA_DIR`` or
``<repo>/../shared/data``; tests that need it are skipped (with the reason)
when it is missing.

``fresh_plugins``: a clean plugin manager for one test, with the
``EFFMODEL_*`` plugin variables removed; it is reset again afterwards so the
next test reloads the installed plugins from scratch.

``run_effmodel``: run ``python -m effmodel.cli ARGS`` in a subprocess with a
clean plugin environment and return the ``CompletedProcess``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
PLUGIN_ENV = ("EFFMODEL_LOAD_PLUGINS", "EFFMODEL_BLOCK_PLUGINS", "EFFMODEL_TRACE_HOOKS")


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
    pytest.skip("table2.csv not found in ../shared/reference or effmodel_reference/data/")


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
