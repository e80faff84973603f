"""Bring your own trained model: read a Keras 2 ``.h5``/``.keras`` file into a spec.

:func:`load_model_file` turns a feed-forward Keras model trained outside
effmodel into an :class:`ImportedModel`: an :class:`ArchitectureSpec`, the
trained weights in Keras' ``channels_last`` layout, and a ``channels_last``
``.h5`` that tf_keras loads and snntoolbox parses.

Readers.  A file is first loaded with tf_keras (any Keras 2 ``.h5`` it can
deserialise, and ``.keras`` files it wrote).  An ``.h5`` that tf_keras cannot
deserialise (e.g. written by standalone Keras 2.0-2.3) is read directly with
h5py: the ``model_config`` JSON attribute and the ``model_weights`` group,
exactly as Keras 2 wrote them.

Legacy ``channels_first`` models.  Keras 2 stores convolution kernels as
``(kh, kw, in, out)`` whatever the data format, so they carry over unchanged;
the input shape is transposed to ``(h, w, c)``.  ``Flatten`` is the subtle
part: since Keras 2.1.6 (keras-team/keras PR #9696, March 2018; also tf.keras
and tf_keras) ``Flatten(data_format='channels_first')`` transposes its input to
``channels_last`` before flattening, so the following dense layer's rows are
already in ``(h, w, c)`` order and are *not* permuted.  Keras 2.0-2.1.5 had no
``data_format`` on ``Flatten`` (none in its config) and flattened ``(c, h, w)``
order; those rows are permuted.  Both cases are handled by tracing the exact
element order each ``Flatten`` produces.  Files written with the Theano
backend hold kernels for a true convolution; like Keras 2's own loader
(``_need_convert_kernel``) they are flipped spatially for TensorFlow.

Untrusted files.  A model file may come from anywhere, and deserialising it
with Keras can run code it carries (a ``Lambda`` layer's marshalled
function, an object from an arbitrary module).  So the architecture is read
first as plain JSON (the ``.h5``'s ``model_config`` attribute with h5py, the
``.keras`` archive's ``config.json``) and every layer outside the supported
list, any serialised function and any module outside Keras are refused
*before* tf_keras sees the file (:func:`check_model_file`); ``.keras`` files
are then loaded with ``safe_mode=True``.

Supported layers: InputLayer (skipped), Conv2D, Dense, MaxPooling2D,
AveragePooling2D, Dropout/SpatialDropout2D, Flatten, and Activation/ReLU/
Softmax layers that fold into the conv/dense layer before them (or that are
no-ops).  Anything else is a one-line :class:`DataError` naming the layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import DataError, EffmodelError, UsageError
from .simulation import LayerWeights
from .specs import ArchitectureSpec, LayerSpec, output_shape, validate

H5_SUFFIXES = (".h5", ".hdf5")
KERAS_SUFFIXES = (".keras",)
SUPPORTED = (
    "InputLayer, Conv2D, Dense, MaxPooling2D, AveragePooling2D, Dropout, SpatialDropout2D, Flatten, "
    "and Activation/ReLU/Softmax directly after a linear Conv2D/Dense"
)
DATASET_BY_SHAPE = {(28, 28, 1): "mnist", (32, 32, 3): "cifar10"}

_CONV = {"Conv2D", "Convolution2D"}
_DENSE = {"Dense"}
_MAXPOOL = {"MaxPooling2D", "MaxPool2D"}
_AVGPOOL = {"AveragePooling2D", "AvgPool2D"}
_DROPOUT = {"Dropout", "SpatialDropout2D"}
_ACTIVATION = {"Activation", "ReLU", "Softmax"}


@dataclass(frozen=True)
class ImportedModel:
    """A model file read into effmodel's terms.

    ``spec``: the architecture (``source`` is the file).  ``weights``: per
    conv/dense layer name, Keras ``channels_last`` layout.  ``model_path``: a
    ``channels_last`` ``.h5`` whose layer names equal the spec's (the input
    file itself when it already is one).  ``keras_version``/``backend``: as
    recorded in the file ("" when absent).  ``reader``: "tf_keras" or "h5py".
    ``notes``: what was changed on the way (folded activations, layout).
    """

    spec: ArchitectureSpec
    weights: Mapping[str, LayerWeights] = field(repr=False)
    model_path: Path
    keras_version: str = ""
    backend: str = ""
    reader: str = ""
    notes: tuple[str, ...] = ()


@dataclass
class _Raw:
    """A model file's architecture config and weights, before translation."""

    class_name: str  # Sequential / Functional / Model
    config: Any
    weights: dict[str, list[np.ndarray]]
    keras_version: str
    backend: str
    reader: str
    fallback_reason: str = ""
    # Flatten layers whose stored config has no data_format (Keras < 2.1.6):
    # they flattened as stored, whatever tf_keras' image_data_format says now
    plain_flatten: frozenset[str] = frozenset()


# --- public entry point ----------------------------------------------------------


def load_model_file(
    path: str | Path,
    dataset: str | None = None,
    name: str | None = None,
    workdir: str | Path | None = None,
    *,
    reader: str = "auto",
) -> ImportedModel:
    """Read a trained Keras 2 model file (``.h5``/``.hdf5``/``.keras``).

    ``dataset``/``name`` default to the one inferred from the input shape and
    the file stem.  A converted ``.h5`` (needed for ``channels_first`` models,
    ``.keras`` files, folded activations, ...) is written under ``workdir``
    (a fresh temporary folder if not given).  ``reader`` is "auto" (tf_keras,
    then h5py for ``.h5``), "tf_keras" or "h5py".

    :raises UsageError: missing file, unknown extension, unknown dataset shape.
    :raises DataError: corrupt/truncated file, unsupported layer or option.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"model file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in H5_SUFFIXES + KERAS_SUFFIXES:
        raise UsageError(f"model file must be Keras .h5/.hdf5 or .keras, got {p.name!r}")
    if reader not in ("auto", "tf_keras", "h5py"):
        raise UsageError(f"reader must be 'auto', 'tf_keras' or 'h5py', got {reader!r}")
    if suffix in KERAS_SUFFIXES:
        if reader == "h5py":
            raise UsageError(".keras files are read with tf_keras only")
        raw = _read_keras_zip(p)
    else:
        raw = _read_h5(p, reader)

    layers, weights, input_shape, notes, identical = _translate(raw, p)
    if raw.fallback_reason:
        notes.insert(0, f"read with h5py: tf_keras could not load it ({raw.fallback_reason})")
    if dataset is None:
        dataset = DATASET_BY_SHAPE.get(input_shape)
        if dataset is None:
            raise UsageError(
                f"{p.name}: cannot infer the dataset from input shape {input_shape} "
                f"(known: {', '.join(f'{v} {k}' for k, v in DATASET_BY_SHAPE.items())}); pass the dataset"
            )
    spec = ArchitectureSpec(
        name=name or p.stem, dataset=dataset, input_shape=input_shape, layers=tuple(layers),
        description=f"imported from {p.name}", source=str(p),
    )
    try:
        validate(spec)
    except UsageError as exc:
        raise DataError(f"{p.name}: {exc}") from None
    _check_weights(spec, weights, p)

    reusable = identical and raw.reader == "tf_keras" and suffix in H5_SUFFIXES
    if reusable:
        model_path = p
    else:
        model_path = _write_h5(spec, weights, p, workdir)
        notes.append(f"wrote a channels_last .h5 with effmodel layer names: {model_path}")
    return ImportedModel(
        spec=spec, weights=weights, model_path=model_path, keras_version=raw.keras_version,
        backend=raw.backend, reader=raw.reader, notes=tuple(notes),
    )


# --- readers ---------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf8")
    return str(value)


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return (msg[:200] + "...") if len(msg) > 200 else (msg or type(exc).__name__)


def _read_h5(p: Path, reader: str) -> _Raw:
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
    _check_config(_parse_config(attrs["model_config"], p, "model_config"), p)  # before any Keras deserialisation
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
    """Deserialise with tf_keras; only after :func:`_check_config` accepted the file."""
    from .keras_compat import import_keras

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


def _read_keras_zip(p: Path) -> _Raw:
    """A ``.keras`` archive (tf_keras' format v3): read with tf_keras."""
    try:
        with zipfile.ZipFile(p) as z:
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
            if "config.json" not in z.namelist():
                raise DataError(f"{p.name} is not a Keras model archive (no config.json)")
            config = z.read("config.json")
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p.name} is not a readable .keras archive (corrupt or truncated?): {_one_line(exc)}") from None
    _check_config(_parse_config(config, p, "config.json"), p)  # before any Keras deserialisation
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


# --- untrusted files: check the architecture as JSON before Keras sees it -----------------

KNOWN_LAYERS = frozenset({"InputLayer", "Flatten"} | _CONV | _DENSE | _MAXPOOL | _AVGPOOL | _DROPOUT | _ACTIVATION)
KERAS_MODULES = ("keras", "tf_keras")  # the only modules a config may name


def check_model_file(path: str | Path) -> None:
    """Refuse a Keras ``.h5``/``.keras`` file that is unsafe or unsupported, without deserialising it.

    Reads only JSON (with h5py or zipfile) and raises a one-line
    :class:`DataError` for a layer outside the supported list, a serialised
    function (``Lambda``, ``__lambda__``) anywhere in the config, or a module
    outside Keras.  Call it before handing a user's file to Keras or to a
    simulator that loads it (snntoolbox's parser).
    """
    p = Path(path)
    if p.suffix.lower() in KERAS_SUFFIXES:
        try:
            with zipfile.ZipFile(p) as z:
                config = z.read("config.json")
        except (zipfile.BadZipFile, OSError, KeyError) as exc:
            raise DataError(f"{p.name} is not a readable .keras archive: {_one_line(exc)}") from None
        _check_config(_parse_config(config, p, "config.json"), p)
        return
    import h5py

    try:
        with h5py.File(p, "r") as f:
            config = f.attrs.get("model_config")
    except (OSError, ValueError) as exc:
        raise DataError(f"{p.name} is not a readable HDF5 model file (corrupt or truncated?): {_one_line(exc)}") from None
    if config is None:
        raise DataError(f"{p.name} has no model_config: a weights-only file; save the whole model (model.save)")
    _check_config(_parse_config(config, p, "model_config"), p)


def _parse_config(value: Any, p: Path, what: str) -> dict[str, Any]:
    try:
        cfg = json.loads(_text(value))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{p.name}: {what} is not valid JSON (corrupt file?): {_one_line(exc)}") from None
    if not isinstance(cfg, dict) or "class_name" not in cfg:
        raise DataError(f"{p.name}: {what} is not a Keras model config")
    return cfg


def _check_config(cfg: dict[str, Any], p: Path) -> None:
    """Supported layers only, no serialised code, no module outside Keras."""
    try:
        chain = _chain(_Raw(cfg["class_name"], cfg.get("config"), {}, "", "", "json"), p)
    except EffmodelError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise DataError(f"{p.name}: the model config is not a Keras 2 model (malformed: {type(exc).__name__} {exc})") from None
    _refuse_unknown_layers(chain, p)
    _refuse_code(cfg, p)


def _refuse_unknown_layers(chain: list[tuple[str, dict[str, Any]]], p: Path) -> None:
    for cls, c in chain:
        if cls not in KNOWN_LAYERS:
            raise DataError(f"{p.name}: layer {c.get('name', '?')!r} ({cls}) is not supported; supported layers: {SUPPORTED}")


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


# --- config -> linear chain of layers ---------------------------------------------------


def _chain(raw: _Raw, p: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(class_name, config)`` of every layer in data-flow order; rejects branches."""
    cfg = raw.config
    if raw.class_name == "Sequential":
        entries = cfg if isinstance(cfg, list) else cfg.get("layers", [])
        out = []
        for e in entries:
            out.append((e["class_name"], dict(e.get("config", {}))))
        return out
    if raw.class_name not in ("Functional", "Model"):
        raise DataError(f"{p.name}: model class {raw.class_name!r} is not supported (Sequential or functional Model)")
    layers = {e["config"]["name"] if "name" not in e else e["name"]: e for e in cfg["layers"]}
    for key in ("input_layers", "output_layers"):
        if len(_history_names(cfg.get(key, []))) != 1:
            raise DataError(f"{p.name}: a model with several inputs or outputs is not supported (one input, one output)")
    inbound: dict[str, list[str]] = {}
    for lname, e in layers.items():
        nodes = e.get("inbound_nodes", [])
        if len(nodes) > 1:
            raise DataError(f"{p.name}: layer {lname!r} is used more than once (shared layers are not supported)")
        inbound[lname] = _history_names(nodes[0]) if nodes else []
        if len(inbound[lname]) > 1:
            raise DataError(
                f"{p.name}: layer {lname!r} ({e['class_name']}) merges several branches; only a linear chain "
                f"of {SUPPORTED} is supported"
            )
    consumers: dict[str, list[str]] = {n: [] for n in layers}
    for lname, srcs in inbound.items():
        for s in srcs:
            consumers.setdefault(s, []).append(lname)
    current = _history_names(cfg["input_layers"])[0]
    order = [current]
    while consumers.get(current):
        if len(consumers[current]) > 1:
            raise DataError(f"{p.name}: the output of layer {current!r} feeds several layers (branches are not supported)")
        current = consumers[current][0]
        order.append(current)
    if len(order) != len(layers):
        raise DataError(f"{p.name}: layers {sorted(set(layers) - set(order))} are not on the input-output chain")
    out = []
    for n in order:
        c = dict(layers[n].get("config", {}))
        c.setdefault("name", n)
        out.append((layers[n]["class_name"], c))
    return out


def _history_names(obj: Any) -> list[str]:
    """Layer names referenced by a serialised node/tensor list (any Keras 2 format)."""
    names: list[str] = []
    if isinstance(obj, dict):
        if "keras_history" in obj:
            names.append(obj["keras_history"][0])
        elif "config" in obj and isinstance(obj["config"], dict) and "keras_history" in obj["config"]:
            names.append(obj["config"]["keras_history"][0])
        else:
            for key in ("args", "kwargs"):
                if key in obj:
                    names += _history_names(obj[key])
        return names
    if isinstance(obj, (list, tuple)):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            return [obj[0]]
        for item in obj:
            names += _history_names(item)
    return names


# --- translation ---------------------------------------------------------------------


def _pair(value: Any, what: str, lname: str, cls: str, p: Path) -> int:
    v = value if isinstance(value, (list, tuple)) else (value, value)
    if len(v) != 2 or v[0] != v[1]:
        raise DataError(f"{p.name}: layer {lname!r} ({cls}) has a non-square {what} {tuple(v)}; only square ones are supported")
    return int(v[0])


def _activation_name(value: Any) -> str:
    if isinstance(value, dict):  # newer serialisation: {"class_name": "function", "config": "relu", ...}
        value = value.get("config", value.get("class_name"))
    return str(value or "linear")


def _input_shape(chain: list[tuple[str, dict[str, Any]]]) -> tuple[int, ...] | None:
    for _, c in chain[:2]:
        for key in ("batch_input_shape", "batch_shape"):
            if c.get(key):
                return tuple(int(v) for v in c[key][1:])
    return None


def _translate(raw: _Raw, p: Path):
    """Spec layers, channels_last weights, input shape, notes, and whether the
    file's layers map one-to-one onto the spec (so the file itself is usable)."""
    chain = _chain(raw, p)
    _refuse_unknown_layers(chain, p)
    shape_raw = _input_shape(chain)
    formats = {c.get("data_format") for cls, c in chain if cls in _CONV | _MAXPOOL | _AVGPOOL}
    formats.discard(None)
    if len(formats) > 1:
        raise DataError(f"{p.name}: mixes channels_first and channels_last layers; not supported")
    channels_first = formats == {"channels_first"}
    if shape_raw is None or len(shape_raw) not in (1, 3) or any(v is None or v <= 0 for v in shape_raw):
        raise DataError(f"{p.name}: the input shape {shape_raw} is not a fixed image (h, w, c) or vector shape")
    if len(shape_raw) == 1:
        raise DataError(f"{p.name}: a flat input {shape_raw} is not supported; effmodel models take (h, w, c) images")
    in_shape = (shape_raw[1], shape_raw[2], shape_raw[0]) if channels_first else tuple(shape_raw)
    notes: list[str] = []
    if channels_first:
        notes.append("converted from channels_first: input (c, h, w) -> (h, w, c); conv kernels unchanged (HWIO)")
    flip = raw.backend == "theano"
    if flip:  # Theano convolves, TF correlates: Keras 2.2's loader flips (engine/saving.py)
        notes.append("conv kernels flipped spatially (Theano convolves, TensorFlow correlates; as Keras 2's loader did)")

    layers: list[LayerSpec] = []
    weights: dict[str, LayerWeights] = {}
    identical = True
    shape: tuple[int, ...] = in_shape
    # element order of the current tensor as stored by the original model: for a
    # 3-d tensor, order[i] is the (h, w, c)-raveled index of stored element i
    layout_cf = channels_first
    row_order: np.ndarray | None = None  # pending permutation for the next dense layer
    nonneg = False  # current activations are >= 0 (so a ReLU is a no-op)

    def last_compute() -> LayerSpec | None:
        for l in reversed(layers):
            if l.type != "dropout":
                return l
        return None

    for cls, c in chain:
        lname = str(c.get("name", cls.lower()))
        where = f"{p.name}: layer {lname!r} ({cls})"
        if cls == "InputLayer":
            continue
        if cls in _CONV:
            if int(c.get("groups", 1)) != 1:
                raise DataError(f"{where}: grouped convolutions are not supported")
            if _pair(c.get("dilation_rate", 1), "dilation rate", lname, cls, p) != 1:
                raise DataError(f"{where}: dilated convolutions are not supported")
            layer = LayerSpec(
                type="conv2d", name=lname, filters=int(c["filters"]),
                kernel=_pair(c["kernel_size"], "kernel", lname, cls, p),
                stride=_pair(c.get("strides", 1), "stride", lname, cls, p),
                padding=_padding(c, where), activation=_activation_name(c.get("activation")),
                use_bias=bool(c.get("use_bias", True)),
            )
            w = _layer_arrays(raw, lname, layer.use_bias, where)
            kernel = w[0][::-1, ::-1].copy() if flip else w[0]
            weights[lname] = LayerWeights(np.asarray(kernel, np.float32), None if w[1] is None else np.asarray(w[1], np.float32))
        elif cls in _DENSE:
            if len(shape) != 1:
                raise DataError(f"{where}: a dense layer on a {len(shape)}-d tensor is not supported (add Flatten before it)")
            layer = LayerSpec(
                type="dense", name=lname, units=int(c["units"]),
                activation=_activation_name(c.get("activation")), use_bias=bool(c.get("use_bias", True)),
            )
            w = _layer_arrays(raw, lname, layer.use_bias, where)
            kernel = np.asarray(w[0], np.float32)
            if row_order is not None:
                if kernel.shape[0] != len(row_order):
                    raise DataError(f"{where}: kernel has {kernel.shape[0]} rows, its input has {len(row_order)} units")
                reordered = np.empty_like(kernel)
                reordered[row_order] = kernel
                kernel = reordered
                notes.append(f"rows of {lname!r} reordered from (c, h, w) to (h, w, c) flatten order")
                identical = False
                row_order = None
            weights[lname] = LayerWeights(kernel, None if w[1] is None else np.asarray(w[1], np.float32))
        elif cls in _MAXPOOL | _AVGPOOL:
            pool = _pair(c.get("pool_size", 2), "pool size", lname, cls, p)
            strides = c.get("strides") or pool
            stride = _pair(strides, "stride", lname, cls, p)
            if stride == 1 and pool > 1:
                raise DataError(f"{where}: pooling with stride 1 is not supported (stride must be > 1 or equal the pool size)")
            layer = LayerSpec(
                type="maxpool" if cls in _MAXPOOL else "avgpool", name=lname, pool=pool,
                stride=1 if stride == pool else stride, padding=_padding(c, where),
            )
        elif cls in _DROPOUT:
            layer = LayerSpec(type="dropout", name=lname, rate=float(c.get("rate", c.get("p", 0.0))))
        elif cls == "Flatten":
            if len(shape) == 3:
                fmt = "channels_last" if lname in raw.plain_flatten else (c.get("data_format") or "channels_last")
                order = _flatten_order(shape, layout_cf, fmt)
                if not np.array_equal(order, np.arange(order.size)):
                    row_order = order
            layer = LayerSpec(type="flatten", name=lname)
        elif cls in _ACTIVATION:
            act = _standalone_activation(cls, c, where)
            prev = last_compute()
            if act == "linear":
                notes.append(f"dropped {lname!r} (linear activation)")
            elif prev is not None and prev.has_weights and prev.activation == "linear":
                layers[layers.index(prev)] = replace(prev, activation=act)
                notes.append(f"folded {lname!r} ({act}) into {prev.name!r}")
            elif act == "relu" and nonneg:
                notes.append(f"dropped {lname!r} (relu of non-negative values is the identity)")
            else:
                raise DataError(f"{where}: {act} can only follow a Conv2D/Dense layer with linear activation here; supported: {SUPPORTED}")
            identical = False
            if act != "linear":
                nonneg = act in ("relu", "softmax") or nonneg
            continue
        else:
            raise DataError(f"{where} is not supported; supported layers: {SUPPORTED}")
        try:
            shape = output_shape(layer, shape)
        except UsageError as exc:
            raise DataError(f"{p.name}: {exc}") from None
        if layer.has_weights:
            nonneg = layer.activation in ("relu", "softmax")
        if layer.type == "flatten":
            layout_cf = False
        layers.append(layer)

    if row_order is not None:
        raise DataError(f"{p.name}: a channels_first Flatten is not followed by a Dense layer")
    if channels_first or flip:
        identical = False
    _check_activations(layers, p)
    return layers, weights, tuple(int(v) for v in in_shape), notes, identical


def _padding(c: dict[str, Any], where: str) -> str:
    pad = str(c.get("padding", "valid")).lower()
    if pad not in ("same", "valid"):
        raise DataError(f"{where}: padding {pad!r} is not supported (same or valid)")
    return pad


def _standalone_activation(cls: str, c: dict[str, Any], where: str) -> str:
    if cls == "Softmax":
        if c.get("axis", -1) not in (-1, [-1]):
            raise DataError(f"{where}: softmax over axis {c.get('axis')} is not supported")
        return "softmax"
    if cls == "ReLU":
        if c.get("max_value") is not None or float(c.get("negative_slope", 0) or 0) != 0 or float(c.get("threshold", 0) or 0) != 0:
            raise DataError(f"{where}: only a plain ReLU (no max_value, negative_slope or threshold) is supported")
        return "relu"
    act = _activation_name(c.get("activation"))
    if act not in ("relu", "softmax", "linear"):
        raise DataError(f"{where}: activation {act!r} is not supported (relu; softmax on the output)")
    return act


def _flatten_order(shape: tuple[int, ...], layout_cf: bool, data_format: str) -> np.ndarray:
    """For each element the original ``Flatten`` emits, its (h, w, c)-raveled index.

    The stored tensor is (c, h, w) if ``layout_cf`` else (h, w, c); Keras'
    ``Flatten(data_format='channels_first')`` moves axis 1 to the end first.
    """
    h, w, c = shape
    idx = np.arange(h * w * c).reshape(h, w, c)
    stored = idx.transpose(2, 0, 1) if layout_cf else idx
    if data_format == "channels_first":
        stored = np.moveaxis(stored, 0, -1)
    return stored.reshape(-1)


def _layer_arrays(raw: _Raw, lname: str, use_bias: bool, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    arrays = raw.weights.get(lname)
    if arrays is None:
        raise DataError(f"{where}: no weights stored for this layer")
    want = 2 if use_bias else 1
    if len(arrays) != want:
        raise DataError(f"{where}: expected {want} weight arrays (kernel{', bias' if use_bias else ''}), found {len(arrays)}")
    return arrays[0], (arrays[1] if use_bias else None)


def _check_activations(layers: list[LayerSpec], p: Path) -> None:
    weighted = [l for l in layers if l.has_weights]
    for l in weighted[:-1]:
        if l.activation != "relu":
            raise DataError(
                f"{p.name}: layer {l.name!r} has activation {l.activation!r}; hidden Conv2D/Dense layers must use relu "
                "(directly or through a following Activation/ReLU layer)"
            )
    if weighted and weighted[-1].activation not in ("softmax", "linear"):
        raise DataError(f"{p.name}: the output layer {weighted[-1].name!r} has activation {weighted[-1].activation!r} (softmax or linear)")


def _check_weights(spec: ArchitectureSpec, weights: Mapping[str, LayerWeights], p: Path) -> None:
    for layer, (in_shape, out_shape) in zip(spec.layers, spec.shapes()):
        if not layer.has_weights:
            continue
        w = weights[layer.name]
        want = (layer.kernel, layer.kernel, in_shape[-1], layer.filters) if layer.type == "conv2d" else (in_shape[0], layer.units)
        if tuple(w.kernel.shape) != want:
            raise DataError(f"{p.name}: layer {layer.name!r} kernel has shape {tuple(w.kernel.shape)}, expected {want}")
        if w.bias is not None and tuple(w.bias.shape) != (out_shape[-1],):
            raise DataError(f"{p.name}: layer {layer.name!r} bias has shape {tuple(w.bias.shape)}, expected {(out_shape[-1],)}")


# --- writing the converted .h5 ------------------------------------------------------------


def _file_digest(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_h5(spec: ArchitectureSpec, weights: Mapping[str, LayerWeights], source: Path, workdir: str | Path | None) -> Path:
    """Save a tf_keras model built from ``spec`` with ``weights``; reused if present."""
    from .training import build_model

    key = hashlib.sha256(f"{_file_digest(source)}:{spec.content_hash()}:{spec.name}".encode()).hexdigest()[:16]
    out_dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="effmodel-import-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}-{key}.h5"
    if target.is_file():
        return target
    from .keras_compat import import_keras

    backend = import_keras().backend
    previous = backend.image_data_format()
    backend.set_image_data_format("channels_last")  # build_model relies on the global default
    try:
        model = build_model(spec)
    finally:
        backend.set_image_data_format(previous)
    for layer in spec.weight_layers:
        w = weights[layer.name]
        model.get_layer(layer.name).set_weights([w.kernel] if w.bias is None else [w.kernel, w.bias])
    tmp = out_dir / f".{target.name}.{os.getpid()}.tmp.h5"
    try:
        with warnings.catch_warnings():  # tf_keras calls .h5 "legacy"; snntoolbox needs it
            warnings.simplefilter("ignore", UserWarning)
            model.save(str(tmp), include_optimizer=False, save_format="h5")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
