"""The safety check on untrusted model files, run before any deserialisation.

A Keras model file may come from anywhere, and deserialising it with Keras can
run code it carries (a ``Lambda`` layer's marshalled function, an activation
serialised as ``__lambda__``, an object from an arbitrary module).  So
effmodel reads the architecture as plain JSON first: the ``.h5``'s
``model_config`` attribute (h5py) or the ``.keras`` archive's ``config.json``
(zipfile), never through Keras, and refuses, in one line naming the file:

- a model class other than ``Sequential``/``Functional``/``Model``;
- any layer entry whose class is outside :data:`KNOWN_LAYERS` (every entry
  of the config's layer list is checked, whether or not it is connected);
- anywhere in the config: a serialised function (``Lambda``, ``__lambda__``,
  a ``function_type`` key) or a ``module`` outside Keras (:data:`KERAS_MODULES`).

:func:`check_model_file` is the entry point for a path (the INIsim plugin
calls it before snntoolbox's parser); the readers call :func:`check_config`
on the parsed JSON before tf_keras sees the file, and load ``.keras`` files
with ``safe_mode=True`` as a second line of defence.  This module imports
neither Keras nor TensorFlow.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

H5_SUFFIXES = (".h5", ".hdf5")
KERAS_SUFFIXES = (".keras",)
SUPPORTED = (
    "InputLayer, Conv2D, Dense, MaxPooling2D, AveragePooling2D, Dropout, SpatialDropout2D, Flatten, "
    "and Activation/ReLU/Softmax directly after a linear Conv2D/Dense"
)
_CONV = {"Conv2D", "Convolution2D"}
_DENSE = {"Dense"}
_MAXPOOL = {"MaxPooling2D", "MaxPool2D"}
_AVGPOOL = {"AveragePooling2D", "AvgPool2D"}
_DROPOUT = {"Dropout", "SpatialDropout2D"}
_ACTIVATION = {"Activation", "ReLU", "Softmax"}
KNOWN_LAYERS = frozenset({"InputLayer", "Flatten"} | _CONV | _DENSE | _MAXPOOL | _AVGPOOL | _DROPOUT | _ACTIVATION)
KERAS_MODULES = ("keras", "tf_keras")  # the only modules a config may name
MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf8")
    return str(value)


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return (msg[:200] + "...") if len(msg) > 200 else (msg or type(exc).__name__)


def check_model_file(path: str | Path) -> None:
    """Refuse a Keras ``.h5``/``.keras`` file that is unsafe, without deserialising it.

    Reads only JSON (with h5py or zipfile) and raises a one-line
    :class:`DataError` for a layer outside the supported list, a serialised
    function (``Lambda``, ``__lambda__``) anywhere in the config, or a module
    outside Keras (:func:`check_config`).  Call it before handing a user's file to Keras or to a
    simulator that loads it (snntoolbox's parser).
    """
    p = Path(path)
    if p.suffix.lower() in KERAS_SUFFIXES:
        try:
            with zipfile.ZipFile(p) as z:
                config = z.read("config.json")
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise DataError(f"{p.name} is not a readable .keras archive: {_one_line(exc)}") from None
        check_config(_parse_config(config, p, "config.json"), p)
        return
    import h5py

    try:
        with h5py.File(p, "r") as f:
            config = f.attrs.get("model_config")
    except (OSError, ValueError) as exc:
        raise DataError(f"{p.name} is not a readable HDF5 model file (corrupt or truncated?): {_one_line(exc)}") from None
    if config is None:
        raise DataError(f"{p.name} has no model_config: a weights-only file; save the whole model (model.save)")
    check_config(_parse_config(config, p, "model_config"), p)


def _parse_config(value: Any, p: Path, what: str) -> dict[str, Any]:
    try:
        cfg = json.loads(_text(value))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{p.name}: {what} is not valid JSON (corrupt file?): {_one_line(exc)}") from None
    if not isinstance(cfg, dict) or "class_name" not in cfg:
        raise DataError(f"{p.name}: {what} is not a Keras model config")
    return cfg


def check_config(cfg: dict[str, Any], p: Path) -> None:
    """Refuse an unsafe or unsupported model config (parsed JSON) in one line naming ``p``."""
    for cls, name in _layer_entries(cfg, p):
        if cls not in KNOWN_LAYERS:
            raise DataError(f"{p.name}: layer {name!r} ({cls}) is not supported; supported layers: {SUPPORTED}")
    _refuse_code(cfg, p)


def _layer_entries(cfg: dict[str, Any], p: Path) -> list[tuple[str, str]]:
    """(class name, layer name) of every entry of the config's layer list."""
    if cfg["class_name"] not in MODEL_CLASSES:
        raise DataError(f"{p.name}: model class {cfg['class_name']!r} is not supported (Sequential or functional Model)")
    inner = cfg.get("config")
    entries = inner if isinstance(inner, list) else inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DataError(f"{p.name}: the model config is not a Keras 2 model (malformed: no list of layer entries)")
    out = []
    for e in entries:
        c = e.get("config") if isinstance(e.get("config"), dict) else {}
        out.append((str(e.get("class_name")), str(e.get("name", c.get("name", "?")))))
    return out


def _refuse_code(obj: Any, p: Path) -> None:
    """Walk the config: serialised functions or foreign modules are refused."""
    if isinstance(obj, dict):
        if obj.get("class_name") in ("Lambda", "__lambda__") or "function_type" in obj:
            raise DataError(f"{p.name}: the model config holds a serialised Python function; effmodel never runs code from a model file")
        module = obj.get("module")
        if isinstance(module, str) and module.split(".")[0] not in KERAS_MODULES:
            raise DataError(f"{p.name}: the model config refers to module {module!r}; only Keras' own objects are loaded")
        for v in obj.values():
            _refuse_code(v, p)
    elif isinstance(obj, list):
        for v in obj:
            _refuse_code(v, p)
