"""Datasets: where images come from, how they are split, how they are streamed.

A dataset plugin registers an object satisfying :class:`Dataset`.  The data
directory comes from ``--data-dir`` or ``EFFMODEL_DATA_DIR``; without either,
loaders fall back to the standard Keras download (for users with internet).
Pixels are scaled to [0, 1] float32, NHWC; labels are int64.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

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
    """What a dataset plugin registers."""

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
    """uint8 pixels to float32 in [0, 1]."""
    return (np.asarray(x, dtype=np.float32) / 255.0).astype(np.float32)


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
