"""The describing commands run in a subprocess, stay light (no TensorFlow,
tf_keras, torch, snntoolbox, norse or numba imported) and print exact figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "torch", "tf_keras", "snntoolbox", "norse", "numba")

PROBE = """
import json, sys
from effmodel.cli import main
code = main({argv!r})
print("HEAVY=" + json.dumps([m for m in {heavy!r} if m in sys.modules]), file=sys.stderr)
sys.exit(code)
"""


def _run_main(argv: list[str], env) -> tuple[subprocess.CompletedProcess, list[str]]:
    r = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                       capture_output=True, text=True, timeout=120, env=env)
    marker = [l for l in r.stderr.splitlines() if l.startswith("HEAVY=")]
    assert marker, r.stderr
    return r, json.loads(marker[-1][len("HEAVY="):])


@pytest.mark.parametrize("argv", [["--help"], ["plugins", "--json"], ["architectures", "--json"], ["cost-models", "--json"]])
def test_describing_commands_import_no_framework(argv, clean_env):
    r, heavy = _run_main(argv, clean_env())
    assert r.returncode == 0, r.stderr
    assert heavy == [], f"effmodel {' '.join(argv)} imported {heavy}"


def test_help(run_effmodel):
    r = run_effmodel("--help")
    assert r.returncode == 0
    for command in ("plugins", "architectures", "cost-models", "train", "run"):
        assert command in r.stdout


def test_plugins_json(run_effmodel):
    r = run_effmodel("plugins", "--json")
    assert r.returncode == 0, r.stderr
    plugins = {p["name"]: p for p in json.loads(r.stdout)}
    assert plugins["reference"]["distribution"] == "effmodel-reference"
    assert plugins["reference"]["hooks"] == ["register_architectures", "register_datasets"]
    assert plugins["costs"]["hooks"] == ["register_cost_models"]
    assert r.stderr == ""


EXPECTED = {
    # name: (dataset, depth, conv, dense, params, MACs by hand)
    "SmallCNN1": ("mnist", 2, 1, 1, 347_146, 26 * 26 * 32 * 9 + 5408 * 64 + 640),
    "MediumCNN1": ("mnist", 3, 2, 1, 356_394, 28 * 28 * 32 * 9 + 26 * 26 * 32 * 288 + 5408 * 64 + 640),
    "LargeCNN1": ("mnist", 5, 4, 1, 68_282,
                  28 * 28 * 16 * 9 + 26 * 26 * 16 * 144 + 13 * 13 * 32 * 144 + 11 * 11 * 32 * 288 + 800 * 64 + 640),
    "DeepCNN1": ("mnist", 7, 4, 3, 70_410,
                 28 * 28 * 16 * 9 + 26 * 26 * 16 * 144 + 13 * 13 * 32 * 144 + 11 * 11 * 32 * 288
                 + 800 * 64 + 64 * 32 + 32 * 16 + 160),
    "SmallCNN2": ("cifar10", 2, 1, 1, 3_691_018, 30 * 30 * 64 * 27 + 14400 * 256 + 2560),
    "MediumCNN2": ("cifar10", 3, 2, 1, 3_727_946, 38_636_032),
    "LargeCNN2": ("cifar10", 5, 4, 1, 1_250_858,
                  32 * 32 * 32 * 27 + 30 * 30 * 32 * 288 + 15 * 15 * 64 * 288 + 13 * 13 * 64 * 576 + 2304 * 512 + 5120),
    "DeepCNN2": ("cifar10", 7, 4, 3, 1_411_242,
                 32 * 32 * 32 * 27 + 30 * 30 * 32 * 288 + 15 * 15 * 64 * 288 + 13 * 13 * 64 * 576
                 + 2304 * 512 + 512 * 256 + 256 * 128 + 1280),
}


def test_architectures_json_exact(run_effmodel):
    r = run_effmodel("architectures", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(EXPECTED) <= set(rows)
    for name, (dataset, depth, conv, dense, params, macs) in EXPECTED.items():
        row = rows[name]
        assert (row["dataset"], row["depth"], row["conv_layers"], row["dense_layers"]) == (dataset, depth, conv, dense), name
        assert row["params"] == params, name
        assert row["macs"] == macs, name
    assert rows["SmallCNN1"]["macs"] == 541_440


def test_architectures_spec_file_and_bad_spec(run_effmodel, tmp_path):
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"name": "Mine", "dataset": "mnist", "input_shape": [4, 4, 1],
                                "layers": [{"type": "flatten"}, {"type": "dense", "units": 2}]}))
    r = run_effmodel("architectures", "--json", "--spec", str(good))
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    assert (row["name"], row["params"], row["macs"]) == ("Mine", 34, 32)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "Bad", "dataset": "mnist", "input_shape": [4, 4, 1],
                               "layers": [{"type": "lstm"}, {"type": "dense", "units": 2}]}))
    r = run_effmodel("architectures", "--spec", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("effmodel: error:") and "'lstm'" in line


def test_cost_models_json(run_effmodel):
    r = run_effmodel("cost-models", "--json")
    assert r.returncode == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)}
    m = models["report-14x"]
    assert (m["mac"], m["add"], m["synop"], m["ann_convention"]) == (14.0, 1.0, 1.0, "half-flops")
    assert m["mac_to_synop"] == 14.0
    h = models["horowitz-fp32"]
    assert (h["mac"], h["add"], h["synop"], h["unit"]) == (4.6, 0.9, 0.9, "pJ")
    i = models["horowitz-int32"]
    assert (i["mac"], i["add"], i["synop"]) == (3.2, 0.1, 0.1)
    assert i["mac_to_synop"] == pytest.approx(32.0)
    lo = models["loihi"]
    assert (lo["synop"], lo["neuron_update"]) == (23.6, 81.0)
    for model in models.values():
        assert model["citation"], f"{model['name']} has no citation"


@pytest.mark.parametrize("argv", [["frobnicate"], ["plugins", "--bogus"], ["architectures", "--spec"]])
def test_usage_errors_are_one_line(run_effmodel, argv):
    """Command-line mistakes end in one line and exit status 2, never a traceback."""
    r = run_effmodel(*argv)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("effmodel: error:")
