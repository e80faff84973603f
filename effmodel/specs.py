"""Framework-neutral network descriptions: what flows between core and plugins.

An :class:`ArchitectureSpec` is a declarative, feed-forward layer list
(conv2d, dense, maxpool, avgpool, dropout, flatten) with shapes in Keras'
``channels_last`` order ``(height, width, channels)``.  Specs are loaded from
TOML or JSON files (see ``data/architectures/``) and can be derived from a
trained Keras model.  Everything here is plain Python + numpy: no framework.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from .errors import UsageError

LAYER_TYPES = ("conv2d", "dense", "maxpool", "avgpool", "dropout", "flatten")
WEIGHT_TYPES = ("conv2d", "dense")
POOL_TYPES = ("maxpool", "avgpool")


@dataclass(frozen=True)
class LayerSpec:
    """One layer.  Unused fields keep their defaults for a given ``type``."""

    type: str
    name: str = ""
    filters: int = 0  # conv2d
    units: int = 0  # dense
    kernel: int = 3  # conv2d: square kernel size
    stride: int = 1  # conv2d stride; pooling stride defaults to ``pool``
    padding: str = "valid"  # conv2d/pooling: "same" or "valid"
    pool: int = 2  # pooling window
    rate: float = 0.0  # dropout
    activation: str = "relu"  # conv2d/dense: "relu", "softmax" or "linear"
    use_bias: bool = True

    @property
    def has_weights(self) -> bool:
        return self.type in WEIGHT_TYPES

    @property
    def pool_stride(self) -> int:
        return self.stride if self.type in POOL_TYPES and self.stride > 1 else self.pool


@dataclass(frozen=True)
class ArchitectureSpec:
    """A feed-forward CNN/MLP: input shape, ordered layers, training defaults."""

    name: str
    dataset: str
    input_shape: tuple[int, int, int]  # (height, width, channels)
    layers: tuple[LayerSpec, ...]
    epochs: int = 10
    description: str = ""
    source: str = field(default="", compare=False)

    # --- derived structure ---------------------------------------------------
    @property
    def weight_layers(self) -> tuple[LayerSpec, ...]:
        return tuple(layer for layer in self.layers if layer.has_weights)

    @property
    def depth(self) -> int:
        """Trainable hidden layers: conv2d + dense, not counting the output
        classifier, as in the report's Tables 1 and 2 (SmallCNN1 = 2)."""
        return self.conv_layers + self.dense_layers

    @property
    def conv_layers(self) -> int:
        return sum(layer.type == "conv2d" for layer in self.layers)

    @property
    def dense_layers(self) -> int:
        """Hidden dense layers (the output classifier is not counted)."""
        return sum(layer.type == "dense" for layer in self.layers) - 1

    def shapes(self) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(input_shape, output_shape)`` of every layer, in order."""
        out = []
        shape: tuple[int, ...] = tuple(self.input_shape)
        for layer in self.layers:
            new = output_shape(layer, shape)
            out.append((shape, new))
            shape = new
        return out

    def with_avg_pooling(self) -> "ArchitectureSpec":
        """The same network with max pooling replaced by average pooling
        (snntoolbox's ``max2avg_pool``)."""
        layers = tuple(replace(l, type="avgpool") if l.type == "maxpool" else l for l in self.layers)
        return replace(self, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        d["input_shape"] = list(self.input_shape)
        d["layers"] = [_compact_layer(l) for l in self.layers]
        return d

    def content_hash(self) -> str:
        """Stable hash of everything that defines the network (not its name)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("description")
        d.pop("epochs")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _compact_layer(layer: LayerSpec) -> dict[str, Any]:
    default = LayerSpec(type=layer.type)
    d = {"type": layer.type}
    for key, value in asdict(layer).items():
        if key != "type" and value != getattr(default, key):
            d[key] = value
    return d


def output_shape(layer: LayerSpec, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape after ``layer`` given its input ``shape`` (channels_last)."""
    t = layer.type
    if t in ("dropout",):
        return shape
    if t == "flatten":
        n = 1
        for s in shape:
            n *= s
        return (n,)
    if t == "dense":
        if len(shape) != 1:
            raise UsageError(f"layer {layer.name!r}: dense needs a flat input, got shape {shape} (add a flatten layer)")
        return (layer.units,)
    if len(shape) != 3:
        raise UsageError(f"layer {layer.name!r}: {t} needs an image-shaped input, got {shape}")
    h, w, c = shape
    if t == "conv2d":
        oh, ow = (_out(h, layer.kernel, layer.stride, layer.padding), _out(w, layer.kernel, layer.stride, layer.padding))
        return (oh, ow, layer.filters)
    if t in POOL_TYPES:
        s = layer.pool_stride
        return (_out(h, layer.pool, s, layer.padding), _out(w, layer.pool, s, layer.padding), c)
    raise UsageError(f"unknown layer type {t!r} (supported: {', '.join(LAYER_TYPES)})")


def _out(size: int, k: int, s: int, padding: str) -> int:
    if padding == "same":
        n = -(-size // s)
    elif padding == "valid":
        n = (size - k) // s + 1
    else:
        raise UsageError(f"unknown padding {padding!r} (use 'same' or 'valid')")
    if n <= 0:
        raise UsageError(f"window {k} does not fit an input of size {size}")
    return n


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (before, after) along one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


# --- loading -------------------------------------------------------------------

_LAYER_FIELDS = set(LayerSpec.__dataclass_fields__)


def spec_from_dict(d: dict[str, Any], source: str = "") -> ArchitectureSpec:
    """Validate and build a spec from a parsed TOML/JSON mapping."""
    where = f" in {source}" if source else ""
    try:
        name = str(d["name"])
        dataset = str(d["dataset"])
        input_shape = tuple(int(v) for v in d["input_shape"])
        raw_layers = d["layers"]
    except KeyError as exc:
        raise UsageError(f"architecture spec{where} lacks the key {exc.args[0]!r}") from None
    if len(input_shape) != 3:
        raise UsageError(f"architecture {name!r}{where}: input_shape must be [height, width, channels]")
    layers = []
    counters: dict[str, int] = {}
    for i, raw in enumerate(raw_layers):
        raw = dict(raw)
        if "type" not in raw:
            raise UsageError(f"architecture {name!r}{where}: layer {i} has no 'type'")
        unknown = set(raw) - _LAYER_FIELDS
        if unknown:
            raise UsageError(f"architecture {name!r}{where}: layer {i} has unknown keys {sorted(unknown)}")
        if raw["type"] not in LAYER_TYPES:
            raise UsageError(
                f"architecture {name!r}{where}: layer {i} has unsupported type {raw['type']!r} "
                f"(supported: {', '.join(LAYER_TYPES)})"
            )
        if not raw.get("name"):
            counters[raw["type"]] = counters.get(raw["type"], 0) + 1
            raw["name"] = f"{raw['type']}_{counters[raw['type']]}"
        layers.append(LayerSpec(**raw))
    spec = ArchitectureSpec(
        name=name,
        dataset=dataset,
        input_shape=input_shape,  # type: ignore[arg-type]
        layers=tuple(layers),
        epochs=int(d.get("epochs", 10)),
        description=str(d.get("description", "")),
        source=source,
    )
    validate(spec)
    return spec


def validate(spec: ArchitectureSpec) -> None:
    """Shapes must chain, names must be unique, the last layer must be dense."""
    names = [l.name for l in spec.layers]
    if len(set(names)) != len(names):
        raise UsageError(f"architecture {spec.name!r}: layer names are not unique")
    spec.shapes()  # raises on a broken chain
    if not spec.layers or spec.layers[-1].type != "dense":
        raise UsageError(f"architecture {spec.name!r}: the last layer must be dense (the classifier)")
    for l in spec.layers:
        if l.has_weights and l.activation not in ("relu", "softmax", "linear"):
            raise UsageError(f"architecture {spec.name!r}: layer {l.name!r} activation {l.activation!r} unsupported")


def load_spec_file(path: str | Path) -> ArchitectureSpec:
    """Load one architecture from a ``.toml`` or ``.json`` file."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"architecture file not found: {p}")
    try:
        if p.suffix == ".toml":
            d = tomllib.loads(p.read_text())
        elif p.suffix == ".json":
            d = json.loads(p.read_text())
        else:
            raise UsageError(f"architecture file must be .toml or .json: {p}")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot parse {p}: {exc}") from None
    return spec_from_dict(d, source=str(p))


def load_spec_dir(directory: str | Path) -> list[ArchitectureSpec]:
    """All ``*.toml``/``*.json`` specs in a directory, sorted by file name."""
    d = Path(directory)
    return [load_spec_file(p) for p in sorted(d.iterdir()) if p.suffix in (".toml", ".json")]


def layer_names(layers: Iterable[LayerSpec]) -> list[str]:
    return [l.name for l in layers]
