"""The report tells apart rows that would otherwise look identical (issue 23):
results of one model, simulator and seed in one folder that differ in their
options, coding, readout, plugin versions or data are shown as
``"<simulator> [<what differs>]"`` in every table, figure and verdict
(``effmodel.analysis.variants``).  Before, four variants of one simulator
were four identical-looking rows, averaged as seeds, and the over-time
figure showed only the first.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from effmodel.analysis.variants import label_variants
from effmodel.testing import store_item, tiny_network

T, N = 8, 4


def _row(run_id, folder="out", simulator="numpy", seed=0, **provenance):
    base = {"simulator_options": "{}", "input_encoding": "analog", "coding": "rate", "readout": "spikes",
            "plugin_versions": '{"effmodel-numpysim":"0.1.0"}', "dataset_fingerprint": "abcdef0123456789"}
    return {"run_id": run_id, "model": "Tiny", "simulator": simulator, "seed": seed, "source_folder": folder,
            **base, **provenance}


def _labels(rows, timesteps=None):
    res, ts, _ = label_variants(pd.DataFrame(rows), timesteps if timesteps is not None else pd.DataFrame(),
                                pd.DataFrame())
    return dict(zip(res["run_id"], res["simulator"])), res, ts


def test_variants_are_named_by_what_differs():
    names, res, _ = _labels([_row("r1", simulator_options='{"flavour":"plain","k":1}'),
                             _row("r2", simulator_options='{"flavour":"spicy","k":1}', coding="ttfs")])
    # only the differing option (flavour, not k) and the differing coding are named
    assert names == {"r1": "numpy [flavour=plain, coding=rate]", "r2": "numpy [flavour=spicy, coding=ttfs]"}
    assert list(res["variant"]) == ["flavour=plain, coding=rate", "flavour=spicy, coding=ttfs"]


def test_a_plugin_version_names_only_the_distribution_that_moved():
    names, _, _ = _labels([_row("r1", plugin_versions='{"effmodel-costs":"0.1.0","effmodel-numpysim":"0.1.0"}'),
                           _row("r2", plugin_versions='{"effmodel-costs":"0.1.0","effmodel-numpysim":"0.2.0"}')])
    assert names == {"r1": "numpy [effmodel-numpysim 0.1.0]", "r2": "numpy [effmodel-numpysim 0.2.0]"}


def test_rows_alike_in_provenance_replicates_and_other_folders_keep_their_name():
    names, res, _ = _labels([_row("r1"), _row("r2"),  # twins alike in provenance (e.g. more test images)
                             _row("r3", seed=1, coding="ttfs"),  # another seed: a replicate, not a variant
                             _row("r4", folder="campaign", simulator_options='{"flavour":"spicy"}'),  # another folder
                             _row("r5", simulator="norse", coding="ttfs")])  # another simulator
    assert names == {"r1": "numpy", "r2": "numpy", "r3": "numpy", "r4": "numpy", "r5": "norse"}
    assert list(res["variant"]) == [""] * 5


def test_not_recorded_is_not_a_difference_of_its_own():
    # a row from older effmodel (no options recorded) beside one with options: named, not confused
    names, _, _ = _labels([_row("r1", simulator_options=None), _row("r2", simulator_options='{"flavour":"spicy"}'),
                           _row("r3", simulator_options='{"flavour":"plain"}')])
    assert names == {"r1": "numpy [simulator_options not recorded]", "r2": "numpy [flavour=spicy]",
                     "r3": "numpy [flavour=plain]"}


def test_the_per_step_series_follow_their_row():
    ts = pd.DataFrame({"run_id": ["r1", "r2", "r9"], "model": "Tiny", "simulator": "numpy", "t": 1, "error": 0.5})
    _, _, ts2 = _labels([_row("r1", coding="rate"), _row("r2", coding="ttfs")], ts)
    assert list(ts2["simulator"]) == ["numpy [coding=rate]", "numpy [coding=ttfs]", "numpy"]


@pytest.fixture
def tiny_plugins(tiny_dataset_plugins):
    return tiny_dataset_plugins(N)


def test_the_report_shows_two_codings_of_one_simulator_apart(tiny_plugins, tmp_path):
    """A rate and a TTFS run of one network by the numpy simulator, stored in
    one folder: the report's tables and series figures name both."""
    from effmodel.analysis.figures import series_figures
    from effmodel.analysis.frame import load_inputs
    from effmodel.analysis.render import render_markdown
    from effmodel.analysis.report import build
    from effmodel.pipeline import RunSettings
    from effmodel.store import Store

    network = tiny_network()
    with Store(tmp_path / "out") as store:
        for run_id, coding in (("r1", "rate"), ("r2", "ttfs")):
            settings = RunSettings(simulator="numpy", output=tmp_path / "out", num_test=N, duration=T, batch_size=N,
                                   record_layers=False, coding=coding)
            assert store_item(network.spec, settings, store, run_id, network) is not None
    inp = load_inputs(tmp_path / "out")
    assert sorted(inp.results["simulator"]) == ["numpy [coding=rate]", "numpy [coding=ttfs]"]
    for r in inp.results.itertuples():  # each row still finds its own series
        assert len(inp.timesteps[(inp.timesteps["run_id"] == r.run_id) & (inp.timesteps["simulator"] == r.simulator)]) == T
    figures, note = series_figures(inp, set())
    assert figures and note == ""
    text = render_markdown(build(tmp_path / "out", bootstrap=200), "figures")
    assert "numpy [coding=rate]" in text and "numpy [coding=ttfs]" in text
    assert json.loads(inp.results["plugin_versions"].iloc[0])  # provenance kept as stored
