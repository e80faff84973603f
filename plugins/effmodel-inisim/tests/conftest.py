"""Fixtures for the inisim plugin tests: real MNIST, small real networks.

``data_dir``: ``EFFMODEL_DATA_DIR`` or ``<repo>/../shared/data`` (tests skip
with the reason when it is missing).  Networks are small on purpose:
SmallCNN1 trained 1 epoch on 500 images (content-keyed cache in
``EFFMODEL_CACHE_DIR`` or a session temp dir), and MediumCNN1 with its
seeded initial weights (no training: SynOp counting does not need accuracy,
but needs a 'same' conv -> 'valid' conv link where borders matter).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(os.environ.get("EFFMODEL_DATA_DIR") or Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
NUM_TEST = 30


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "mnist").is_dir():
        pytest.skip(f"MNIST not found under {DATA_DIR} (set EFFMODEL_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist(data_dir):
    from effmodel.plugins import get_datasets

    return get_datasets()["mnist"].load(data_dir)


@pytest.fixture(scope="session")
def test_images(mnist):
    from effmodel.datasets import to_float

    return to_float(mnist.x_test[:NUM_TEST]), mnist.y_test[:NUM_TEST].astype("int64")


@pytest.fixture(scope="session")
def small_trained(mnist, tmp_path_factory):
    from effmodel.plugins import get_architectures
    from effmodel.training import TrainingSettings, train

    cache = Path(os.environ.get("EFFMODEL_CACHE_DIR") or tmp_path_factory.mktemp("cache"))
    spec = get_architectures()["SmallCNN1"]
    return train(spec, mnist, 0.15, TrainingSettings(epochs=1, max_train_images=500), cache=cache, verbose=0)


@pytest.fixture(scope="session")
def small_network(small_trained, mnist):
    from effmodel.conversion import convert_trained
    from effmodel.simulation import NormalisationSettings

    return convert_trained(small_trained.spec, small_trained.path, mnist, NormalisationSettings(num_images=200))


@pytest.fixture(scope="session")
def medium_network(mnist):
    """MediumCNN1 with seeded random weights, normalised by the core."""
    from effmodel.conversion import convert
    from effmodel.keras_compat import import_keras
    from effmodel.plugins import get_architectures
    from effmodel.simulation import NormalisationSettings
    from effmodel.training import build_model, extract_weights

    import_keras().utils.set_random_seed(0)
    spec = get_architectures()["MediumCNN1"]
    model = build_model(spec)
    return convert(spec, extract_weights(model, spec), mnist, NormalisationSettings(num_images=100))


@pytest.fixture(scope="session")
def inisim():
    from effmodel.plugins import get_simulators

    return get_simulators()["inisim"]
