"""User architecture specs in TOML and JSON, and one-line errors for bad ones."""

from __future__ import annotations

import json

import pytest

from effmodel.counting import count_network
from effmodel.errors import UsageError
from effmodel.specs import ArchitectureSpec, LayerSpec, load_spec_file, spec_from_dict

TOML = """
name = "Mine"
dataset = "mnist"
input_shape = [28, 28, 1]
epochs = 3

[[layers]]
type = "conv2d"
filters = 4
kernel = 5
stride = 2
padding = "same"

[[layers]]
type = "avgpool"
pool = 2

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
units = 10
activation = "softmax"
"""

DICT = {
    "name": "Mine",
    "dataset": "mnist",
    "input_shape": [28, 28, 1],
    "epochs": 3,
    "layers": [
        {"type": "conv2d", "filters": 4, "kernel": 5, "stride": 2, "padding": "same"},
        {"type": "avgpool", "pool": 2},
        {"type": "flatten"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ],
}


def _check_mine(spec: ArchitectureSpec) -> None:
    assert spec.name == "Mine" and spec.dataset == "mnist" and spec.epochs == 3
    assert spec.input_shape == (28, 28, 1)
    assert [l.type for l in spec.layers] == ["conv2d", "avgpool", "flatten", "dense"]
    assert [l.name for l in spec.layers] == ["conv2d_1", "avgpool_1", "flatten_1", "dense_1"]
    # 28 'same' stride 2 -> 14; pool 2 -> 7; 7*7*4 = 196
    assert [o for _, o in spec.shapes()] == [(14, 14, 4), (7, 7, 4), (196,), (10,)]
    assert count_network(spec).params == 5 * 5 * 1 * 4 + 4 + 196 * 10 + 10
    assert (spec.depth, spec.conv_layers, spec.dense_layers) == (1, 1, 0)


def test_toml_spec_loads(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text(TOML)
    spec = load_spec_file(p)
    _check_mine(spec)
    assert spec.source == str(p)


def test_json_spec_loads_and_equals_toml(tmp_path):
    (tmp_path / "a.toml").write_text(TOML)
    (tmp_path / "b.json").write_text(json.dumps(DICT))
    a, b = load_spec_file(tmp_path / "a.toml"), load_spec_file(tmp_path / "b.json")
    _check_mine(b)
    assert a == b  # source is not compared
    assert a.content_hash() == b.content_hash()


def test_content_hash_ignores_name_but_not_layers():
    a = spec_from_dict(DICT)
    renamed = spec_from_dict(DICT | {"name": "Other", "description": "x", "epochs": 9})
    wider = spec_from_dict(DICT | {"layers": [dict(DICT["layers"][0], filters=5), *DICT["layers"][1:]]})
    assert a.content_hash() == renamed.content_hash()
    assert a.content_hash() != wider.content_hash()


def test_to_dict_round_trips():
    a = spec_from_dict(DICT)
    assert spec_from_dict(a.to_dict()) == a


def test_specs_are_frozen():
    spec = spec_from_dict(DICT)
    with pytest.raises(Exception):
        spec.name = "x"  # type: ignore[misc]
    with pytest.raises(Exception):
        spec.layers[0].filters = 1  # type: ignore[misc]


def test_with_avg_pooling_swaps_only_max_pooling():
    spec = ArchitectureSpec("m", "mnist", (4, 4, 1), (
        LayerSpec("conv2d", "c", filters=1), LayerSpec("maxpool", "p"), LayerSpec("flatten", "f"), LayerSpec("dense", "d", units=2)))
    assert [l.type for l in spec.with_avg_pooling().layers] == ["conv2d", "avgpool", "flatten", "dense"]


def _layers(*extra):
    return [*extra, {"type": "flatten"}, {"type": "dense", "units": 10}]


BAD = {
    "unknown layer type": (DICT | {"layers": _layers({"type": "conv3d", "filters": 2})}, "unsupported type 'conv3d'"),
    "missing key": ({k: v for k, v in DICT.items() if k != "input_shape"}, "'input_shape'"),
    "missing layers": ({k: v for k, v in DICT.items() if k != "layers"}, "'layers'"),
    "layer without type": (DICT | {"layers": _layers({"filters": 2})}, "no 'type'"),
    "unknown layer key": (DICT | {"layers": _layers({"type": "conv2d", "filter": 2})}, "unknown keys ['filter']"),
    "broken shape chain": (DICT | {"layers": [{"type": "conv2d", "filters": 2}, {"type": "dense", "units": 10}]}, "flat input"),
    "window too large": (DICT | {"layers": _layers({"type": "conv2d", "filters": 2, "kernel": 29})}, "does not fit"),
    "bad padding": (DICT | {"layers": _layers({"type": "conv2d", "filters": 2, "padding": "full"})}, "'full'"),
    "bad input shape": (DICT | {"input_shape": [28, 28]}, "input_shape"),
    "last layer not dense": (DICT | {"layers": [{"type": "conv2d", "filters": 2}, {"type": "flatten"}]}, "last layer must be dense"),
    "duplicate names": (DICT | {"layers": _layers({"type": "conv2d", "filters": 2, "name": "x"}, {"type": "conv2d", "filters": 2, "name": "x"})}, "not unique"),
    "bad activation": (DICT | {"layers": _layers({"type": "conv2d", "filters": 2, "activation": "tanh"})}, "'tanh'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_gives_one_line_usage_error(case, tmp_path):
    d, fragment = BAD[case]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d))
    with pytest.raises(UsageError) as info:
        load_spec_file(p)
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message, message


def test_unparsable_and_missing_files(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n[[layers]")
    for path, fragment in ((broken, "cannot parse"), (tmp_path / "nope.toml", "not found"), (tmp_path / "x.yaml", "not found")):
        with pytest.raises(UsageError) as info:
            load_spec_file(path)
        assert fragment in str(info.value) and "\n" not in str(info.value)
    wrong_ext = tmp_path / "x.yaml"
    wrong_ext.write_text("name: x")
    with pytest.raises(UsageError, match=".toml or .json"):
        load_spec_file(wrong_ext)
