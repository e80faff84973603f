"""Readers of Keras 2 model files: tf_keras first, h5py for old ``.h5`` files tf_keras cannot load.

A file is first loaded with tf_keras (any Keras 2 ``.h5`` it can
deserialise, and ``.keras`` files it wrote).  An ``.h5`` that tf_keras cannot
deserialise (e.g. written by standalone Keras 2.0-2.3) is read directly with
h5py: the ``model_config`` JSON attribute and the ``model_weights`` group,
exactly as Keras 2 wrote them.  Every path checks the config as JSON
(:func:`effmodel.keras_import.untrusted.check_config` and
:func:`~effmodel.keras_import.translate.check_structure`) before tf_keras sees
the file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, EffmodelError
from .translate import _Raw, check_structure
from .untrusted import KERAS_SUFFIXES, _one_line, _parse_config, _text, check_config


def _check_before_keras(value: Any, p: Path, what: str) -> None:
    cfg = _parse_config(value, p, what)
    check_config(cfg, p)
    check_structure(cfg, p)


def read_h5(p: Path, reader: str) -> _Raw:
    """Check the HDF5 container, then load with tf_keras or h5py."""
    import h5py

    try:
        with h5py.File(p, "r") as f:
            attrs = dict(f.attrs)
            has_weights = "model_weights" in f
    except (OSError, ValueError) as exc:
        raise DataError(f"{p.name} is not a readable HDF5 model file (corrupt or truncated?): {_one_line(exc)}") from None
    if "model_config" not in attrs:
        raise DataError(f"{p.name} has no model_config: a weights-only file; save the whole model (model.save)")
    if not has_weights:
        raise DataError(f"{p.name} has no model_weights group: the model was saved without weights")
    version, backend = _text(attrs.get("keras_version")), _text(attrs.get("backend"))
    _check_before_keras(attrs["model_config"], p, "model_config")  # before any Keras deserialisation
    plain_flatten = _flatten_without_format(attrs["model_config"])
    if not version or version.startswith("1."):
        raise DataError(f"{p.name} was written by Keras {version or '1.x'}; only Keras 2 files are supported")
    reason = ""
    if reader in ("auto", "tf_keras"):
        try:
            raw = _read_with_tf_keras(p)
            raw.keras_version, raw.backend, raw.plain_flatten = version, backend, plain_flatten
            return raw
        except EffmodelError:
            raise
        except Exception as exc:  # noqa: BLE001 - any deserialisation failure -> h5py
            if reader == "tf_keras":
                raise DataError(f"tf_keras cannot load {p.name}: {_one_line(exc)}") from None
            reason = _one_line(exc)
    raw = _read_with_h5py(p)
    raw.keras_version, raw.backend, raw.fallback_reason, raw.plain_flatten = version, backend, reason, plain_flatten
    return raw


def _flatten_without_format(model_config: Any) -> frozenset[str]:
    try:
        cfg = json.loads(_text(model_config))
        inner = cfg.get("config")
        entries = inner if isinstance(inner, list) else inner.get("layers", [])
        return frozenset(
            e.get("config", {}).get("name", "") for e in entries
            if e.get("class_name") == "Flatten" and "data_format" not in e.get("config", {})
        )
    except (ValueError, AttributeError, TypeError):
        return frozenset()


def _read_with_tf_keras(p: Path) -> _Raw:
    """Deserialise with tf_keras; only after :func:`_check_before_keras` accepted the file."""
    from ..keras_compat import import_keras

    keras = import_keras()
    if p.suffix.lower() in KERAS_SUFFIXES:  # refuses lambdas and arbitrary objects itself, too
        model = keras.models.load_model(str(p), compile=False, safe_mode=True)
    else:
        model = keras.models.load_model(str(p), compile=False)
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers}
    return _Raw(type(model).__name__, model.get_config(), weights, "", "", "tf_keras")


def _read_with_h5py(p: Path) -> _Raw:
    """Keras 2's HDF5 layout: ``model_config`` JSON + ``model_weights/<layer>``."""
    import h5py

    try:
        with h5py.File(p, "r") as f:
            cfg = json.loads(_text(f.attrs["model_config"]))
            group = f["model_weights"]
            layer_names = [_text(n) for n in group.attrs.get("layer_names", list(group.keys()))]
            weights: dict[str, list[np.ndarray]] = {}
            for lname in layer_names:
                g = group[lname]
                names = [_text(n) for n in g.attrs.get("weight_names", [])]
                weights[lname] = [np.asarray(g[n][()]) for n in names]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"cannot read {p.name} with h5py (corrupt, truncated or not a Keras 2 model): {_one_line(exc)}") from None
    if not isinstance(cfg, dict) or "class_name" not in cfg:
        raise DataError(f"{p.name}: model_config is not a Keras model config")
    return _Raw(cfg["class_name"], cfg.get("config"), weights, "", "", "h5py")


def read_keras_zip(p: Path) -> _Raw:
    """A ``.keras`` archive (tf_keras' format v3): read with tf_keras."""
    try:
        with zipfile.ZipFile(p) as z:
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
            if "config.json" not in z.namelist():
                raise DataError(f"{p.name} is not a Keras model archive (no config.json)")
            config = z.read("config.json")
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p.name} is not a readable .keras archive (corrupt or truncated?): {_one_line(exc)}") from None
    _check_before_keras(config, p, "config.json")  # before any Keras deserialisation
    try:
        raw = _read_with_tf_keras(p)
    except EffmodelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(
            f"tf_keras cannot load {p.name} (written by Keras {meta.get('keras_version', '?')}; "
            f"Keras 3 archives are not readable by Keras 2): {_one_line(exc)}"
        ) from None
    raw.keras_version = str(meta.get("keras_version", ""))
    return raw
