"""Train the ANN of a spec with the Keras 2 API, cached under a content key.

The key hashes everything that changes the trained weights: the network
(layers, not its name), dataset, seed, epochs, batch size, learning rate,
early stopping, training-set size, library versions and the source of this
module (:func:`training_code_version`).  A cache entry is a
folder ``<cache>/<key>/`` with ``model.h5``, ``meta.json`` and TensorBoard
``logs/``; it is written to a temporary folder and renamed into place, so an
interrupted run never leaves an entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .datasets import Arrays, split_train_validation, to_float
from .errors import DataError, UsageError
from .faults import fault_point
from .simulation import LayerWeights
from .specs import ArchitectureSpec


@dataclass(frozen=True)
class TrainingSettings:
    """Training hyper-parameters; defaults follow the report."""

    epochs: int
    seed: int = 0
    batch_size: int = 128
    learning_rate: float = 1e-3
    early_stopping: int | None = None  # patience in epochs on val_loss; None = off
    max_train_images: int | None = None  # None = the whole training split

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise UsageError(f"epochs must be positive, got {self.epochs}")
        if self.max_train_images is not None and self.max_train_images <= 0:
            raise UsageError(f"the number of training images must be positive, got {self.max_train_images}")


@dataclass(frozen=True)
class TrainedModel:
    """A trained network in the cache."""

    spec: ArchitectureSpec
    path: Path  # model.h5
    key: str
    metadata: Mapping[str, Any]
    cache_hit: bool

    @property
    def test_accuracy(self) -> float:
        return float(self.metadata["test_accuracy"])


def training_code_version() -> str:
    """Hash of this module's source: models trained by older training code
    (a changed optimizer, split or preprocessing) are never reused from the
    cache, e.g. by a CI cache kept between runs."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def cache_key(spec: ArchitectureSpec, dataset: str, settings: TrainingSettings, versions: Mapping[str, str]) -> str:
    blob = json.dumps(
        {"spec": spec.content_hash(), "dataset": dataset, "settings": asdict(settings), "versions": dict(versions),
         "training_code": training_code_version()},
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def build_model(spec: ArchitectureSpec):
    """A ``tf_keras.Sequential`` model whose layer names equal the spec's.

    ``data_format`` is always explicit: a user's ``keras.json`` saying
    ``channels_first`` must not change what effmodel builds."""
    from .keras_compat import import_keras

    keras = import_keras()
    L = keras.layers
    layers: list[Any] = [L.InputLayer(input_shape=spec.input_shape, name="input")]
    for l in spec.layers:
        if l.type == "conv2d":
            layers.append(L.Conv2D(l.filters, l.kernel, strides=l.stride, padding=l.padding, activation=l.activation, use_bias=l.use_bias,
                                    data_format="channels_last", name=l.name))
        elif l.type == "dense":
            layers.append(L.Dense(l.units, activation=l.activation, use_bias=l.use_bias, name=l.name))
        elif l.type == "maxpool":
            layers.append(L.MaxPooling2D(l.pool, strides=l.pool_stride, padding=l.padding, data_format="channels_last", name=l.name))
        elif l.type == "avgpool":
            layers.append(L.AveragePooling2D(l.pool, strides=l.pool_stride, padding=l.padding, data_format="channels_last", name=l.name))
        elif l.type == "dropout":
            layers.append(L.Dropout(l.rate, name=l.name))
        elif l.type == "flatten":
            layers.append(L.Flatten(data_format="channels_last", name=l.name))
    return keras.Sequential(layers, name=spec.name)


def extract_weights(model, spec: ArchitectureSpec) -> dict[str, LayerWeights]:
    """Trained kernels and biases per conv/dense layer, Keras layout."""
    out = {}
    for l in spec.weight_layers:
        w = model.get_layer(l.name).get_weights()
        out[l.name] = LayerWeights(kernel=np.asarray(w[0], np.float32), bias=np.asarray(w[1], np.float32) if len(w) > 1 else None)
    return out


def load_model(path: str | Path):
    """Load a Keras 2 model file with tf_keras."""
    from .keras_compat import import_keras

    keras = import_keras()
    return keras.models.load_model(str(path), compile=False)


def evaluate(model, x_uint8: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy of a Keras model on uint8 images, in bounded memory."""
    correct = 0
    for start in range(0, len(x_uint8), batch_size):
        p = model.predict_on_batch(to_float(x_uint8[start : start + batch_size]))
        correct += int((np.argmax(p, axis=1) == y[start : start + batch_size]).sum())
    return correct / max(len(x_uint8), 1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _remove_stale_tmp(cache: Path, key: str) -> None:
    """Remove half-written entries of ``key`` whose training process was killed."""
    from .store import process_alive

    for stale in cache.glob(f".tmp-{key}-*"):
        pid = stale.name.rpartition("-")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _valid_entry_meta(entry: Path) -> dict[str, Any] | None:
    """The metadata of a complete cache entry, or None when ``meta.json`` does
    not parse or ``model.h5`` does not match the digest recorded when it was
    written (truncated or overwritten).  Entries from before the digest was
    recorded are checked by opening the HDF5 file."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        if not isinstance(meta, dict) or "test_accuracy" not in meta:
            return None
        digest = meta.get("model_sha256")
        if digest is not None:
            return meta if _sha256(entry / "model.h5") == digest else None
        import h5py

        with h5py.File(entry / "model.h5", "r") as f:
            return meta if "model_config" in f.attrs and "model_weights" in f else None
    except (OSError, ValueError, KeyError):
        return None


def train(
    spec: ArchitectureSpec,
    arrays: Arrays,
    validation_fraction: float,
    settings: TrainingSettings,
    cache: Path,
    verbose: int | None = None,
) -> TrainedModel:
    """Train ``spec`` (or reuse the cache) and return the cached model."""
    from .keras_compat import import_keras, versions

    keras = import_keras()
    vers = versions()
    key = cache_key(spec, spec.dataset, settings, vers)
    entry = cache / key
    meta_path = entry / "meta.json"
    if meta_path.is_file() and (entry / "model.h5").is_file():
        meta = _valid_entry_meta(entry)
        if meta is not None:
            return TrainedModel(spec=spec, path=entry / "model.h5", key=key, metadata=meta, cache_hit=True)
        print(f"{spec.name}: the cached model {entry} is truncated or damaged; training it again", file=sys.stderr)
        shutil.rmtree(entry, ignore_errors=True)

    if tuple(arrays.x_train.shape[1:]) != tuple(spec.input_shape):
        raise DataError(f"{spec.name} expects inputs {spec.input_shape}, the dataset has {arrays.x_train.shape[1:]}")
    xtr, ytr, xva, yva = split_train_validation(arrays.x_train, arrays.y_train, validation_fraction)
    if settings.max_train_images is not None:
        xtr, ytr = xtr[: settings.max_train_images], ytr[: settings.max_train_images]
        xva, yva = xva[: max(settings.max_train_images // 5, 1)], yva[: max(settings.max_train_images // 5, 1)]

    keras.utils.set_random_seed(settings.seed)
    model = build_model(spec)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    tmp = cache / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale_tmp(cache, key)
    tmp.mkdir(parents=True)
    callbacks: list[Any] = [keras.callbacks.TensorBoard(log_dir=str(tmp / "logs"), histogram_freq=0)]
    if settings.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.early_stopping, restore_best_weights=True))
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2
    started = time.perf_counter()
    try:
        history = model.fit(
            to_float(xtr), ytr, validation_data=(to_float(xva), yva), epochs=settings.epochs,
            batch_size=settings.batch_size, shuffle=True, callbacks=callbacks, verbose=verbose,
        )
        wall = time.perf_counter() - started
        test_acc = evaluate(model, arrays.x_test, arrays.y_test)
        fault_point("train", spec.name)
        model.save(str(tmp / "model.h5"), include_optimizer=False)
        meta = {
            "model": spec.name, "dataset": spec.dataset, "key": key, "spec": spec.to_dict(),
            "settings": asdict(settings), "versions": vers, "train_images": int(len(xtr)),
            "validation_images": int(len(xva)), "epochs_run": len(history.history.get("loss", [])),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "test_accuracy": test_acc, "train_seconds": wall, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "model_sha256": _sha256(tmp / "model.h5"),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if entry.is_dir() and not meta_path.is_file():  # a broken entry from older code or by hand
            shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not meta_path.is_file():
        raise DataError(f"could not write the model cache entry {entry}; remove it and retry")
    meta = json.loads(meta_path.read_text())
    return TrainedModel(spec=spec, path=entry / "model.h5", key=key, metadata=meta, cache_hit=False)
