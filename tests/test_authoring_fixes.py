"""Small fixes from the plugin-authoring issue: results of a plugin's
architecture carry the plugin's name as family, the results table stays
aligned with long simulator names, ``effmodel cost-models`` shows every
per-operation cost."""

from __future__ import annotations

import tomllib

import pytest

from effmodel import plugins
from effmodel.commands.pipeline_commands import _family, print_table2
from effmodel.paths import cost_models_toml


def test_family_is_the_plugin_that_registered_the_architecture():
    archs = plugins.get_architectures()
    assert _family(archs["SmallCNN1"], None) == "reference"
    assert _family(archs["SmallCNN1"], object()) == "byo"  # a user's --model-file
    if "TinyCNN" not in archs:
        pytest.skip("effmodel-example is not installed")
    assert _family(archs["TinyCNN"], None) == "example"


def _row(model, simulator):
    return {"model": model, "simulator": simulator, "ann_accuracy": 0.9876, "ann_flops": 1.5e6, "total_costs": 8.1e6,
            "snn_accuracy": 0.9811, "synops_at_threshold": 1.35e6, "factor": 6.01, "cost_model": "report-14x"}


def test_results_table_stays_aligned_with_long_names(capsys):
    print_table2([_row("SmallCNN1", "inisim"), _row("AVeryLongArchitectureName", "my-very-long-simulator-name")])
    head, *rows = [l for l in capsys.readouterr().out.splitlines() if l.strip()][:3]
    end = head.index("ANN acc") + len("ANN acc")  # right-aligned numbers end where their header ends
    for row in rows:
        assert row[end - len("98.76"):end] == "98.76", (head, row)
        assert row.split()[1] in ("inisim", "my-very-long-simulator-name")  # name and number never run together


def test_cost_models_shows_every_per_operation_cost(run_effmodel):
    out = run_effmodel("cost-models")
    assert out.returncode == 0, out.stderr
    lines = {l.split()[0]: l for l in out.stdout.splitlines() if l and not l.startswith(" ")}
    presets = tomllib.loads(cost_models_toml().read_text())
    models = [dict(fields, name=name) for name, fields in presets["models"].items()]  # [models.<name>] tables
    checked = 0
    for m in models:
        line = lines[m["name"]]
        for key in ("mac", "add", "synop", "neuron_update"):
            if key in m and (key in ("mac", "add", "synop") or m[key] != 0):
                assert f"{key} {m[key]:g}" in line, (m["name"], key, line)
                checked += 1
    assert checked >= 3 * len(models)


def test_an_unsupported_readout_is_refused_before_any_work(run_effmodel, tmp_path):
    sims = plugins.get_simulators()
    if "inisim" not in sims:
        pytest.skip("effmodel-inisim is not installed")
    assert sims["inisim"].readouts == ("spikes",)
    out = run_effmodel("run", "--simulator", "inisim", "--readout", "potential", "--models", "SmallCNN1",
                       "--output", str(tmp_path / "out"))
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == ["effmodel: error: simulator 'inisim' supports --readout spikes, not 'potential'"]
    assert not (tmp_path / "out").exists()  # nothing written, nothing trained


@pytest.mark.parametrize("how", ["core setting", "old norse option"])
def test_norse_potential_readout_matches_the_reference(how):
    """``--readout potential`` and the old ``--option readout=potential`` (an
    alias) give Norse the same per-step accuracy as the numpy reference's
    potential readout, and differ from the default spikes readout."""
    from dataclasses import replace as dc_replace

    from effmodel import SimulationConfig, simulate
    from effmodel.testing import reference_simulator, tiny_images, tiny_network

    sims = plugins.get_simulators()
    if "norse" not in sims:
        pytest.skip("effmodel-norse is not installed")
    net = tiny_network(0, "avg")
    x, y = tiny_images(net, 8)
    base = SimulationConfig(duration=12, batch_size=8)
    config = dc_replace(base, readout="potential") if how == "core setting" else dc_replace(base, options={"readout": "potential"})
    norse = simulate(sims["norse"], net, [(x, y)], config)
    ref = simulate(reference_simulator(), net, [(x, y)], dc_replace(base, readout="potential"))
    spikes = simulate(reference_simulator(), net, [(x, y)], base)
    assert norse.correct_t.tolist() == ref.correct_t.tolist()
    assert ref.correct_t.tolist() != spikes.correct_t.tolist()  # the rule matters on this network
