"""The smaller frictions of issue 23 (finding 7): ``effmodel plugins`` lists what
each plugin contributes, a cost model without a citation is warned about,
``architectures`` columns stay apart with long names, ``python -m effmodel``
works, and a simulator's declared input encodings are honoured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from effmodel import hookimpl
from effmodel.costs import CostModel
from effmodel.specs import ArchitectureSpec, LayerSpec


def test_plugins_json_lists_what_each_plugin_contributes(run_effmodel):
    r = run_effmodel("plugins", "--json")
    assert r.returncode == 0, r.stderr
    by = {p["name"]: p for p in json.loads(r.stdout)}
    assert by["reference"]["contributes"]["register_datasets"] == ["mnist", "cifar10"]
    assert "SmallCNN1" in by["reference"]["contributes"]["register_architectures"]
    assert "report-14x" in by["costs"]["contributes"]["register_cost_models"]
    numpy = by["numpysim"]["simulators"]["numpy"]
    assert numpy["readouts"] == ["spikes", "potential"] and numpy["input_encodings"] == ["analog", "poisson"]
    assert numpy["codings"] == ["rate", "ttfs"]
    assert by["norse"]["simulators"]["norse"]["codings"] == ["rate", "ttfs"]
    assert [o["name"] for o in numpy["options"]] == ["reset", "neuron", "mf", "keep_workdir"]
    assert numpy["options"][-1]["default"] is False and numpy["options"][1]["choices"] == ["if", "adaptive"]
    assert by["inisim"]["simulators"]["inisim"]["readouts"] == ["spikes"]


def test_plugins_text_shows_the_options(run_effmodel):
    r = run_effmodel("plugins")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    norse = lines.index(next(l for l in lines if l.startswith("norse ")))
    assert "hooks: register_simulators" in lines[norse]
    assert lines[norse + 1].startswith("  simulator norse: ")
    assert any(l.strip().startswith("--option neuron=...  (if | iaf | lif | adaptive; default if)") for l in lines[norse:])
    assert "  datasets: mnist, cifar10" in lines


def test_a_cost_model_without_citation_is_warned_about(fresh_plugins, capsys):
    class Uncited:
        @hookimpl
        def register_cost_models(self, register):
            register(CostModel(name="uncited-3x", mac=3.0, add=1.0, synop=1.0))

    fresh_plugins.register_plugin(Uncited(), name="uncited")
    try:
        assert "uncited-3x" in fresh_plugins.get_cost_models()  # warned, still usable
        warnings = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
        assert warnings == ["effmodel: warning: plugin 'uncited': register_cost_models 'uncited-3x': no citation; "
                            "say where the numbers come from, or label them made up (docs/hooks.md)"]
    finally:
        fresh_plugins.unregister_plugin("uncited")


def test_architectures_columns_stay_apart_with_long_names(fresh_plugins, capsys):
    from effmodel.cli import main

    long = ArchitectureSpec(name="AVeryLongArchitectureName", dataset="fashion-mnist-v2", input_shape=(28, 28, 1),
                            layers=(LayerSpec(type="flatten", name="f"),
                                    LayerSpec(type="dense", name="out", units=10, activation="softmax")))

    class Long:
        @hookimpl
        def register_architectures(self, register):
            register(long)

    fresh_plugins.register_plugin(Long(), name="long")
    try:
        assert main(["architectures"]) == 0
        lines = capsys.readouterr().out.splitlines()
        row = next(l for l in lines if l.startswith("AVeryLongArchitectureName"))
        # flatten + the dense classifier alone: depth 0, no conv, no hidden dense; 784 * 10 + 10 = 7,850
        # params, 7,840 MACs, 10 neurons (conv/dense outputs, as TinyCNN's 26*26*8 + 10 = 5,418)
        assert row.split() == ["AVeryLongArchitectureName", "fashion-mnist-v2", "0", "0", "0", "7,850", "7,840", "10"]
        table = [l for l in lines if not l.startswith("Ensembles:")]  # the note on ensembles follows the table
        assert len({len(l) for l in table}) == 1  # the last (numeric) column ends in one place
        header = lines[0]
        assert header.index("dataset") == row.index("fashion-mnist-v2")
    finally:
        fresh_plugins.unregister_plugin("long")


def test_python_dash_m_effmodel():
    r = subprocess.run([sys.executable, "-m", "effmodel", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "plugins" in r.stdout, r.stderr


def test_declared_input_encodings_are_honoured():
    from effmodel.errors import UsageError
    from effmodel.simulation import SimulationConfig, simulate
    from effmodel.testing import tiny_images, tiny_network

    class AnalogOnly:
        name, description, input_encodings = "analog-only", "test", ("analog",)

        def open(self, network, config):
            raise AssertionError("must not be opened")

    network = tiny_network()
    with pytest.raises(UsageError, match="simulator 'analog-only' supports input encoding analog, not 'poisson'"):
        simulate(AnalogOnly(), network, [tiny_images(network, 2)], SimulationConfig(duration=2, input_encoding="poisson"))
