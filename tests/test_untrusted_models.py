"""The untrusted-file check on its own (:mod:`effmodel.keras_import.untrusted`, issue 23).

The check runs before any deserialisation: it reads a model file's
architecture as JSON (h5py attribute or the ``.keras`` archive's
``config.json``) and refuses unsupported layers, serialised functions and
modules outside Keras.  The configs here are written by hand in the Keras 2
layout, so the tests need neither Keras nor TensorFlow, and a subprocess
shows that the check itself imports neither.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile

import pytest

from effmodel.errors import DataError
from effmodel.keras_import.untrusted import check_config, check_model_file


def _layer(cls, name, **config):
    return {"class_name": cls, "config": {"name": name, **config}}


CLEAN = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
    _layer("InputLayer", "in", batch_input_shape=[None, 28, 28, 1]),
    _layer("Conv2D", "conv", filters=4, kernel_size=[5, 5], activation="relu",
           kernel_initializer={"module": "keras.initializers", "class_name": "GlorotUniform", "config": {}}),
    _layer("MaxPooling2D", "pool"), _layer("Flatten", "flat"), _layer("Dense", "out", units=10, activation="softmax"),
]}}


def _with(edit):
    cfg = copy.deepcopy(CLEAN)
    edit(cfg)
    return cfg


LAMBDA = {"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAAAAAA", None, None], "function_type": "lambda"}}
FUNCTIONAL = {"class_name": "Functional", "config": {"name": "f", "input_layers": [["in", 0, 0]], "output_layers": [["out", 0, 0]],
                                                      "layers": [{"name": "in", "class_name": "InputLayer", "config": {"name": "in"}, "inbound_nodes": []},
                                                                 {"name": "out", "class_name": "Dense", "config": {"name": "out", "units": 10},
                                                                  "inbound_nodes": [[["in", 0, 0, {}]]]}]}}

REFUSED = {
    "lambda-layer": (_with(lambda c: c["config"]["layers"].insert(4, LAMBDA)), "layer 'evil' (Lambda) is not supported"),
    "lambda-activation": (_with(lambda c: c["config"]["layers"][-1]["config"].update(
        activation={"class_name": "__lambda__", "config": {"code": "4wEAAAAA"}})), "serialised Python function"),
    "function-type": (_with(lambda c: c["config"]["layers"][1]["config"].update(
        kernel_regularizer={"class_name": "L2", "config": {"function_type": "raw"}})), "serialised Python function"),
    "foreign-module": (_with(lambda c: c["config"]["layers"][1]["config"]["kernel_initializer"].update(module="os")),
                       "refers to module 'os'"),
    "unknown-layer": (_with(lambda c: c["config"]["layers"].insert(2, _layer("BatchNormalization", "bn"))),
                      "layer 'bn' (BatchNormalization) is not supported"),
    "unconnected-lambda": (dict(FUNCTIONAL, config=dict(FUNCTIONAL["config"], layers=FUNCTIONAL["config"]["layers"] + [
        {"name": "evil", **LAMBDA, "inbound_nodes": []}])), "layer 'evil' (Lambda) is not supported"),
    "nested-model": (_with(lambda c: c["config"]["layers"].insert(2, {"class_name": "Sequential", "config": CLEAN["config"]})),
                     "(Sequential) is not supported"),
    "top-level-class": ({"class_name": "Lambda", "config": LAMBDA["config"]}, "model class 'Lambda' is not supported"),
    "no-layer-list": ({"class_name": "Sequential", "config": "layers"}, "malformed"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_in_one_line_naming_the_file(case, tmp_path):
    cfg, fragment = REFUSED[case]
    with pytest.raises(DataError) as info:
        check_config(cfg, tmp_path / "model.h5")
    assert "\n" not in str(info.value) and str(info.value).startswith("model.h5: ") and fragment in str(info.value), str(info.value)


def test_clean_configs_pass(tmp_path):
    check_config(CLEAN, tmp_path / "model.h5")
    check_config(FUNCTIONAL, tmp_path / "model.h5")


def _h5(path, cfg):
    import h5py

    with h5py.File(path, "w") as f:
        if cfg is not None:
            f.attrs["model_config"] = cfg if isinstance(cfg, str) else json.dumps(cfg)
    return path


def _keras(path, cfg):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "2.15.0"}))
        if cfg is not None:
            z.writestr("config.json", json.dumps(cfg))
    return path


def test_files_are_read_as_json_and_checked(tmp_path):
    check_model_file(_h5(tmp_path / "clean.h5", CLEAN))
    check_model_file(_keras(tmp_path / "clean.keras", CLEAN))
    for make, suffix in ((_h5, ".h5"), (_keras, ".keras")):
        with pytest.raises(DataError, match=r"'evil' \(Lambda\) is not supported"):
            check_model_file(make(tmp_path / f"evil{suffix}", REFUSED["lambda-layer"][0]))
    with pytest.raises(DataError, match="weights-only"):
        check_model_file(_h5(tmp_path / "weights.h5", None))
    with pytest.raises(DataError, match="not valid JSON"):
        check_model_file(_h5(tmp_path / "garbled.h5", "{not json"))
    with pytest.raises(DataError, match="not a readable .keras archive"):
        check_model_file(_keras(tmp_path / "noconfig.keras", None))
    (tmp_path / "truncated.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(DataError, match="not a readable HDF5 model file"):
        check_model_file(tmp_path / "truncated.h5")


def test_the_check_imports_no_framework(tmp_path):
    path = _h5(tmp_path / "evil.h5", REFUSED["lambda-layer"][0])
    script = ("import sys\nfrom effmodel.keras_import.untrusted import check_model_file\n"
              "try:\n    check_model_file(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'torch')))\n")
    r = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["DataError", "[]"], r.stdout
