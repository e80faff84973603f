"""A checked Keras config and its weights -> effmodel layers and channels_last weights.

The config is first reduced to a linear chain of layers (:func:`layer_chain`;
one input, one output, no branches or shared layers), then translated layer
by layer (:func:`translate`).  Legacy ``channels_first`` models: Keras 2 stores
convolution kernels as ``(kh, kw, in, out)`` whatever the data format, so
they carry over unchanged and the input shape is transposed to ``(h, w, c)``.
``Flatten`` is the subtle part: since Keras 2.1.6 (keras-team/keras PR #9696)
``Flatten(data_format='channels_first')`` transposes its input to
``channels_last`` before flattening, so the following dense layer's rows are
already in ``(h, w, c)`` order; Keras 2.0-2.1.5 had no ``data_format`` on
``Flatten`` and flattened ``(c, h, w)`` order, so those rows are permuted.
Both cases are handled by tracing the exact element order each ``Flatten``
produces.  Files written with the Theano backend hold kernels for a true
convolution; like Keras 2's own loader they are flipped spatially.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError, EffmodelError, UsageError
from ..simulation import LayerWeights
from ..specs import ArchitectureSpec, LayerSpec, output_shape
from .untrusted import _ACTIVATION, _AVGPOOL, _CONV, _DENSE, _DROPOUT, _MAXPOOL, KNOWN_LAYERS, SUPPORTED


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


def check_structure(cfg: dict[str, Any], p: Path) -> None:
    """Refuse, before Keras sees the file, a config that is not a linear chain (one-line :class:`DataError`)."""
    try:
        layer_chain(_Raw(cfg["class_name"], cfg.get("config"), {}, "", "", "json"), p)
    except EffmodelError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise DataError(f"{p.name}: the model config is not a Keras 2 model (malformed: {type(exc).__name__} {exc})") from None


def layer_chain(raw: _Raw, p: Path) -> list[tuple[str, dict[str, Any]]]:
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


def translate(raw: _Raw, p: Path):
    """Spec layers, channels_last weights, input shape, notes, and whether the
    file's layers map one-to-one onto the spec (so the file itself is usable)."""
    chain = layer_chain(raw, p)
    for cls, c in chain:  # the file passed untrusted.check_config; tf_keras' own config is checked again
        if cls not in KNOWN_LAYERS:
            raise DataError(f"{p.name}: layer {c.get('name', '?')!r} ({cls}) is not supported; supported layers: {SUPPORTED}")
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


def check_weights(spec: ArchitectureSpec, weights: Mapping[str, LayerWeights], p: Path) -> None:
    for layer, (in_shape, out_shape) in zip(spec.layers, spec.shapes()):
        if not layer.has_weights:
            continue
        w = weights[layer.name]
        want = (layer.kernel, layer.kernel, in_shape[-1], layer.filters) if layer.type == "conv2d" else (in_shape[0], layer.units)
        if tuple(w.kernel.shape) != want:
            raise DataError(f"{p.name}: layer {layer.name!r} kernel has shape {tuple(w.kernel.shape)}, expected {want}")
        if w.bias is not None and tuple(w.bias.shape) != (out_shape[-1],):
            raise DataError(f"{p.name}: layer {layer.name!r} bias has shape {tuple(w.bias.shape)}, expected {(out_shape[-1],)}")
