"""Repricing stored counts equals running again: a result stored under
report-14x and repriced under preset X (``effmodel.reprice``) has, field for
field, the cost columns of a fresh ``effmodel run --cost-model X`` of the
same item (same trained model from the cache, same images, same simulator)."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest

import effmodel

pytestmark = pytest.mark.slow

RUN = ["run", "--simulator", "numpy", "--models", "SmallCNN1", "--epochs", "1", "--max-train-images", "2000",
       "--num-test", "20", "--duration", "20", "--batch-size", "20"]
PRESETS = ("loihi", "report-14x-snntoolbox", "fair-45nm-fp32", "fair-45nm-fp32-zs")
# the columns a cost model decides (the rest describe the simulation, identical by construction)
COST_COLUMNS = ("cost_model", "total_costs", "snn_costs", "factor", "factor_low", "factor_high", "break_even_ratio",
                *(f"{side}_cost_{part}" for side in ("ann", "snn") for part in ("arithmetic", "memory", "neuron", "input")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, model_cache, data_dir):
    import subprocess
    import sys

    env = dict(os.environ, EFFMODEL_CACHE_DIR=str(model_cache), EFFMODEL_DATA_DIR=str(data_dir))
    base = tmp_path_factory.mktemp("reprice")
    out = {}
    for preset in ("report-14x", *PRESETS):
        d = base / preset
        proc = subprocess.run([sys.executable, "-m", "effmodel.cli", *RUN, "--cost-model", preset, "--output", str(d)],
                              capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[preset] = effmodel.load_results(d)
    return out


def _same(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    a, b = float(a), float(b)
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_stored_result_repriced_equals_a_fresh_run(runs, preset):
    stored, fresh = runs["report-14x"], runs[preset]
    assert len(stored) == len(fresh) == 1
    # the simulation itself is the same (same cached model, images and simulator)
    assert stored.iloc[0]["synops_at_threshold"] == fresh.iloc[0]["synops_at_threshold"]
    repriced = effmodel.reprice(stored, preset).iloc[0]
    want = fresh.iloc[0]
    diff = {c: (repriced.get(c), want[c]) for c in COST_COLUMNS if not _same(repriced.get(c), want[c])}
    assert not diff, diff
    assert stored.iloc[0]["cost_model"] == "report-14x" and not _same(stored.iloc[0]["factor"], want["factor"])


def test_repricing_under_its_own_preset_changes_nothing(runs):
    stored = runs["report-14x"]
    again = effmodel.reprice(stored, "report-14x").iloc[0]
    assert all(_same(again.get(c), stored.iloc[0][c]) for c in COST_COLUMNS)
    assert isinstance(stored, pd.DataFrame) and "setting_simulator" in stored and stored.iloc[0]["protocol"]
