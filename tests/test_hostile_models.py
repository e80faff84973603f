"""Hostile model files: a Keras file can carry code (a ``Lambda`` layer's
marshalled function) that tf_keras runs while deserialising it.  effmodel
reads the architecture as JSON first and refuses such a file before Keras
sees it, on every path that opens a user's file (``architectures``, ``run``
and ``export`` with ``--model-file``; the INIsim plugin checks what it hands
to snntoolbox's parser).

The hostile files are a real tf_keras model with a ``Lambda`` layer spliced
into its saved config; the function creates the file named by
``$HOSTILE_MARKER`` when called (and does nothing while this test builds the
file, since the variable is unset here).  A control loads the same files with
plain tf_keras in a subprocess and shows that the marker *does* appear there,
so the files are genuinely hostile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from effmodel.errors import DataError
from effmodel.keras_import import check_model_file, load_model_file


def _evil(x):  # never called in this process: HOSTILE_MARKER is unset here
    return (__import__("os").environ.get("HOSTILE_MARKER")
            and open(__import__("os").environ["HOSTILE_MARKER"], "w").close(), x)[1]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """``{"h5": path, "keras": path}``: a tiny model with a Lambda spliced in after Flatten."""
    import os

    assert "HOSTILE_MARKER" not in os.environ
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    from tf_keras.src.saving import serialization_lib

    L = keras.layers
    d = tmp_path_factory.mktemp("hostile")
    model = keras.Sequential([
        L.InputLayer(input_shape=(28, 28, 1)), L.Conv2D(4, 5, activation="relu", name="conv"),
        L.MaxPooling2D(2, name="pool"), L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="out"),
    ])
    lam = L.Lambda(_evil, name="evil")  # a layer object only: never built, never called

    model.save(str(d / "clean.h5"))
    shutil.copy(d / "clean.h5", d / "evil.h5")
    import h5py

    with h5py.File(d / "evil.h5", "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        layers = cfg["config"]["layers"]
        layers.insert(len(layers) - 1, {"class_name": "Lambda", "config": lam.get_config()})
        f.attrs["model_config"] = json.dumps(cfg, default=list)

    model.save(str(d / "clean.keras"))
    _rewrite_keras_config(d / "clean.keras", d / "evil.keras",
                          lambda cfg: cfg["config"]["layers"].insert(len(cfg["config"]["layers"]) - 1,
                                                                     serialization_lib.serialize_keras_object(lam)))
    # the same code hidden in a Dense layer's activation instead of a Lambda layer
    hidden = serialization_lib.serialize_keras_object(lam)["config"]["function"]
    _rewrite_keras_config(d / "clean.keras", d / "hidden.keras",
                          lambda cfg: cfg["config"]["layers"][-1]["config"].update(
                              activation={"class_name": "__lambda__", "config": {"code": hidden[0], "defaults": None,
                                                                                 "closure": None}}))
    # a module outside Keras named as an initializer's home
    _rewrite_keras_config(d / "clean.keras", d / "module.keras",
                          lambda cfg: cfg["config"]["layers"][1]["config"]["kernel_initializer"].update(module="evil_module"))
    return {"h5": d / "evil.h5", "keras": d / "evil.keras", "hidden": d / "hidden.keras", "module": d / "module.keras",
            "clean_h5": d / "clean.h5", "clean_keras": d / "clean.keras"}


def _rewrite_keras_config(src: Path, dst: Path, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)


def test_the_hostile_files_really_run_code_when_keras_loads_them(hostile, tmp_path):
    """Control: plain tf_keras (no safe mode for .keras) runs the Lambda: the marker appears."""
    script = (
        "import os, sys; from effmodel.keras_compat import import_keras; keras = import_keras()\n"
        "os.environ['HOSTILE_MARKER'] = sys.argv[2]; keras.models.load_model(sys.argv[1], compile=False)\n"
        "os.environ['HOSTILE_MARKER'] = sys.argv[4]; keras.models.load_model(sys.argv[3], compile=False, safe_mode=False)\n"
    )
    markers = [tmp_path / "control-h5", tmp_path / "control-keras"]
    args = [str(hostile["h5"]), str(markers[0]), str(hostile["keras"]), str(markers[1])]
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for marker in markers:
        assert marker.exists(), f"{marker.name}: the hostile file did not run its code under plain tf_keras; the test proves nothing"


@pytest.mark.parametrize("kind", ["h5", "keras"])
@pytest.mark.parametrize("command", ["architectures", "run", "export"])
def test_hostile_file_never_runs_through_the_cli(hostile, kind, command, run_effmodel, clean_env, data_dir, tmp_path):
    marker = tmp_path / "marker"
    out = tmp_path / "out"
    args = {
        "architectures": ["architectures", "--model-file", str(hostile[kind])],
        "run": ["run", "--simulator", "norse", "--model-file", str(hostile[kind]), "--num-test", "4", "--duration", "4",
                "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"), "--output", str(out)],
        "export": ["export", "--model-file", str(hostile[kind]), "--output", str(out / "x.nir"), "--data-dir", str(data_dir),
                   "--cache-dir", str(tmp_path / "cache")],
    }[command]
    r = run_effmodel(*args, env=clean_env(HOSTILE_MARKER=str(marker)))
    assert not marker.exists(), "the model file's code ran"
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("effmodel: error: ") and "'evil' (Lambda) is not supported" in lines[0], lines[0]
    assert not out.exists()  # nothing written: no store, no CSV, no export


def test_code_hidden_outside_a_lambda_layer_is_refused(hostile, monkeypatch, tmp_path):
    marker = tmp_path / "marker"
    monkeypatch.setenv("HOSTILE_MARKER", str(marker))
    with pytest.raises(DataError, match="serialised Python function") as info:
        load_model_file(hostile["hidden"], workdir=tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="module 'evil_module'"):
        load_model_file(hostile["module"], workdir=tmp_path)
    assert not marker.exists()


def test_check_model_file_reads_json_only(hostile, monkeypatch, tmp_path):
    """The check the INIsim plugin runs before snntoolbox's parser: refuses, and accepts clean files."""
    marker = tmp_path / "marker"
    monkeypatch.setenv("HOSTILE_MARKER", str(marker))
    for kind in ("h5", "keras"):
        with pytest.raises(DataError, match=r"'evil' \(Lambda\) is not supported"):
            check_model_file(hostile[kind])
    check_model_file(hostile["clean_h5"])
    check_model_file(hostile["clean_keras"])
    assert not marker.exists()


# --- bad weights: refused before anything is simulated or stored ---------------------------


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    """Valid tiny models whose weights no SNN can be built from."""
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    L = keras.layers
    d = tmp_path_factory.mktemp("badweights")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        L.InputLayer(input_shape=(28, 28, 1)), L.Conv2D(4, 5, activation="relu", name="conv"),
        L.MaxPooling2D(2, name="pool"), L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="out"),
    ])
    good = [w.copy() for w in model.get_weights()]  # conv kernel, conv bias, out kernel, out bias
    cases = {}
    for name, index, edit in [("nan", 0, lambda w: w.__setitem__((2, 2, 0, 1), float("nan"))),
                              ("inf", 3, lambda w: w.__setitem__(4, float("inf"))),
                              ("zero_out", 2, lambda w: w.fill(0.0))]:
        weights = [w.copy() for w in good]
        edit(weights[index])
        model.set_weights(weights)
        model.save(str(d / f"{name}.h5"))
        cases[name] = d / f"{name}.h5"
    return cases


@pytest.mark.parametrize("case, fragments", [
    ("nan", ["nan.h5", "layer 'conv' kernel has 1 NaN/infinite values of 100"]),
    ("inf", ["inf.h5", "layer 'out' bias has 1 NaN/infinite values of 10"]),
    ("zero_out", ["zero_out.h5", "the output layer 'out' has an all-zero kernel"]),
])
@pytest.mark.parametrize("command", ["run", "export"])
def test_broken_weights_are_one_line_before_anything_is_written(bad_weights, case, fragments, command, data_dir, tmp_path, capsys):
    from effmodel.cli import main

    out = tmp_path / "out"
    common = ["--model-file", str(bad_weights[case]), "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")]
    if command == "run":
        args = ["run", "--simulator", "norse", *common, "--num-test", "4", "--duration", "4", "--norm-images", "50", "--output", str(out)]
    else:
        args = ["export", *common, "--output", str(out / "x.nir")]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 3, err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("effmodel: error: "), err
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    assert not out.exists()  # no store, no CSV, no export
