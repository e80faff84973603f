"""Shared fixtures: a SmallCNN1 trained briefly on real MNIST, converted twice
(max pooling kept, and max2avg_pool for the NIR round trip)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[3]
N_TEST = 30


def data_dir() -> Path:
    raw = os.environ.get("EFFMODEL_DATA_DIR")
    d = Path(raw) if raw else REPO.parent / "shared" / "data"
    if not (d / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {d}; set EFFMODEL_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def mnist():
    from effmodel import plugins

    return plugins.get_datasets()["mnist"].load(data_dir())


@pytest.fixture(scope="session")
def trained(mnist, tmp_path_factory):
    from effmodel import plugins
    from effmodel.training import TrainingSettings, train

    spec = plugins.get_architectures()["SmallCNN1"]
    cache = Path(os.environ.get("EFFMODEL_CACHE_DIR") or tmp_path_factory.mktemp("cache"))
    return train(spec, mnist, 0.15, TrainingSettings(epochs=1, max_train_images=500), cache=cache, verbose=0)


def _convert(trained, mnist, max2avg: bool):
    from effmodel.conversion import convert_trained
    from effmodel.simulation import NormalisationSettings

    return convert_trained(trained.spec, trained.path, mnist, NormalisationSettings(num_images=200, max2avg_pool=max2avg))


@pytest.fixture(scope="session")
def network(trained, mnist):
    return _convert(trained, mnist, False)


@pytest.fixture(scope="session")
def network_avg(trained, mnist):
    return _convert(trained, mnist, True)


@pytest.fixture(scope="session")
def test_batch(mnist):
    from effmodel.datasets import to_float

    return to_float(mnist.x_test[:N_TEST]), np.asarray(mnist.y_test[:N_TEST], dtype=np.int64)
