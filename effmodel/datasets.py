"""Datasets: where images come from, how they are split, how they are streamed.

A dataset plugin registers an object satisfying :class:`Dataset`.  The data
directory comes from ``--data-dir`` or ``EFFMODEL_DATA_DIR``; without either,
loaders fall back to the standard Keras download (for users with internet).

The contract (:func:`check_arrays`, enforced on every load): images NHWC of
the dataset's ``input_shape``, uint8 pixels (0-255) or floats already in
[0, 1]; labels integer class indices of shape ``(N,)`` in
``[0, num_classes)``; as many labels as images; a non-empty test set.  An
architecture asking for a dataset must match its ``input_shape`` and its
number of classes (:func:`check_compatible`).  Each error is one line naming
the dataset's plugin (and the architecture's).  Pixels reach networks as
float32 in [0, 1] (:func:`to_float`); labels as int64.

:func:`dataset_fingerprint` identifies what a dataset contains (its declared
``version``, else a hash of the arrays), for the model cache and provenance.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from .errors import DataError

DATA_DIR_ENV = "EFFMODEL_DATA_DIR"


@dataclass(frozen=True)
class Arrays:
    """A dataset in memory as uint8 images (NHWC) and int labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class Dataset(Protocol):
    """What a dataset plugin registers.

    Optional: ``version`` (str): bump it whenever the data ``load`` returns
    changes; it then identifies the content (cached models, provenance)
    without hashing the arrays.  Without it, the arrays are hashed on load.
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    validation_fraction: float  # the report's split (0.15 MNIST, 0.17 CIFAR-10)

    def load(self, data_dir: Path | None) -> Arrays:
        """Read the dataset from ``data_dir`` or download it when ``None``.

        :raises DataError: one line saying where it looked and how to fix it.
        """
        ...


def resolve_data_dir(option: str | Path | None) -> Path | None:
    """``--data-dir`` beats ``EFFMODEL_DATA_DIR``; ``None`` means download."""
    raw = option if option not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if raw is None:
        return None
    p = Path(raw).expanduser()
    if not p.is_dir():
        raise DataError(
            f"data directory {p} does not exist; pass --data-dir or set {DATA_DIR_ENV} "
            "to a folder holding mnist/ and cifar10/ (see README)"
        )
    return p


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]; float pixels (already in [0, 1] by the contract) to float32."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    return (np.asarray(x, dtype=np.float32) / 255.0).astype(np.float32)


def check_arrays(arrays: Any, dataset: Any, who: str) -> None:
    """Raise a one-line :class:`DataError` if what ``dataset.load`` returned breaks the contract.

    ``who`` names the culprit, e.g. ``plugin 'p' (dataset 'd')``.
    """
    problem = arrays_problem(arrays, tuple(dataset.input_shape), int(dataset.num_classes))
    if problem:
        raise DataError(f"{who} broke the dataset contract in load: {problem}")


def arrays_problem(arrays: Any, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """The first way ``arrays`` breaks the dataset contract, or None."""
    if not all(hasattr(arrays, f) for f in ("x_train", "y_train", "x_test", "y_test")):
        return f"returned a {type(arrays).__name__}, expected an effmodel.datasets.Arrays"
    for split in ("train", "test"):
        x, y = np.asarray(getattr(arrays, f"x_{split}")), np.asarray(getattr(arrays, f"y_{split}"))
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
            return f"x_{split}: expected images of shape (N, {', '.join(map(str, input_shape))}) (NHWC, the dataset's input_shape), got {x.shape}"
        if x.dtype != np.uint8:
            if x.dtype.kind != "f":
                return f"x_{split}: expected uint8 pixels (0-255) or floats in [0, 1], got dtype {x.dtype}"
            lo, hi = (float(np.min(x)), float(np.max(x))) if x.size else (0.0, 0.0)
            if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo and hi <= 1.0):
                hint = " (0-255 values? give them as uint8)" if hi > 1.0 and np.isfinite(hi) else ""
                return f"x_{split}: float pixels must lie in [0, 1], got values in [{lo:g}, {hi:g}]{hint}"
        if y.ndim != 1:
            hint = " (one-hot labels? give class indices, e.g. y.argmax(axis=1))" if y.ndim == 2 else ""
            return f"y_{split}: expected integer class indices of shape ({len(x)},), got shape {y.shape}{hint}"
        if len(y) != len(x):
            return f"y_{split}: {len(y)} labels for {len(x)} images"
        if y.dtype.kind not in "iu":
            return f"y_{split}: expected integer class indices, got dtype {y.dtype}"
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            return f"y_{split}: expected class indices in [0, {num_classes - 1}] (num_classes {num_classes}), got {bad}"
    if len(arrays.x_test) == 0:
        return "x_test: the test set is empty"
    return None


def check_compatible(spec: Any, dataset: Any, spec_who: str, dataset_who: str) -> None:
    """Raise a one-line :class:`DataError` unless ``spec`` fits ``dataset``: the same
    input shape, and a classifier with one unit per class."""
    if tuple(spec.input_shape) != tuple(dataset.input_shape):
        raise DataError(f"{spec_who} expects inputs {tuple(spec.input_shape)}, but {dataset_who} has images "
                        f"{tuple(dataset.input_shape)}")
    last = spec.layers[-1] if spec.layers else None
    units = getattr(last, "units", None)
    if units is not None and int(units) != int(dataset.num_classes):
        raise DataError(f"{spec_who} ends in a {units}-unit classifier, but {dataset_who} has "
                        f"{dataset.num_classes} classes")


_fingerprints: dict[int, tuple[Any, str]] = {}  # id(arrays) -> (weak reference, fingerprint)


def dataset_fingerprint(dataset: Any, arrays: Any) -> str:
    """What the dataset contains, in a few characters: ``version:<v>`` when the
    dataset declares a ``version``, else ``sha256:<16 hex>`` of its arrays
    (dtypes, shapes and bytes of images and labels, train and test).

    For the training cache key and the ``dataset_fingerprint`` column: data
    regenerated under the same name gets a new fingerprint, so a model
    trained on the old data is not reused.  Hashing MNIST takes ~0.2 s; the
    result is remembered for as long as ``arrays`` lives.
    """
    version = getattr(dataset, "version", None)
    if isinstance(version, (str, int)) and not isinstance(version, bool) and str(version):
        return f"version:{version}"
    cached = _fingerprints.get(id(arrays))
    if cached is not None and cached[0]() is arrays:
        return cached[1]
    h = hashlib.sha256()
    for field in ("x_train", "y_train", "x_test", "y_test"):
        a = np.ascontiguousarray(getattr(arrays, field))
        h.update(f"{field}{a.dtype.str}{a.shape}".encode())
        try:
            h.update(memoryview(a).cast("B"))
        except (TypeError, ValueError):  # a dtype the buffer protocol cannot cast
            h.update(a.tobytes())
    fingerprint = f"sha256:{h.hexdigest()[:16]}"
    try:
        ref = weakref.ref(arrays, lambda _r, key=id(arrays): _fingerprints.pop(key, None))
    except TypeError:  # not weak-referenceable: do not remember
        return fingerprint
    _fingerprints[id(arrays)] = (ref, fingerprint)
    return fingerprint


_loaded: dict[str, str] = {}  # dataset name -> fingerprint of the arrays this process loaded last


def remember_loaded(name: str, fingerprint: str) -> None:
    """Note the fingerprint of the data just loaded for ``name`` (read by :func:`loaded_fingerprint`)."""
    _loaded[name] = fingerprint


def loaded_fingerprint(name: str) -> str | None:
    """The fingerprint of the data this process last loaded for dataset ``name``
    (:func:`effmodel.pipeline.dataset_arrays`), or None."""
    return _loaded.get(name)


def split_train_validation(
    x: np.ndarray, y: np.ndarray, validation_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keras-style split: the *last* ``validation_fraction`` of the training
    set is held out (as ``validation_split`` does), no shuffling."""
    n_val = int(round(len(x) * validation_fraction))
    cut = len(x) - n_val
    return x[:cut], y[:cut], x[cut:], y[cut:]


def iter_batches(x: np.ndarray, y: np.ndarray, batch_size: int, limit: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(float images, labels)`` batches; only one batch is converted
    to float at a time, so memory is bounded by ``batch_size``."""
    n = len(x) if limit is None else min(limit, len(x))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield to_float(x[start:stop]), np.asarray(y[start:stop], dtype=np.int64)
