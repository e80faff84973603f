"""The trained-model cache: a miss trains, a hit reuses without retraining,
the key follows every setting, and half-written entries are never used."""

from __future__ import annotations

import json
import os

import pytest

from effmodel.errors import UsageError
from effmodel.training import TrainingSettings, cache_key

pytestmark = pytest.mark.slow

SETTINGS = TrainingSettings(epochs=1, max_train_images=300)


@pytest.fixture(scope="module")
def smallcnn1():
    from effmodel import plugins

    return plugins.get_architectures()["SmallCNN1"]


@pytest.fixture(scope="module")
def mnist(data_dir):
    from effmodel import plugins

    ds = plugins.get_datasets()["mnist"]
    return ds, ds.load(data_dir)


def test_settings_validate():
    with pytest.raises(UsageError):
        TrainingSettings(epochs=0)
    with pytest.raises(UsageError):
        TrainingSettings(epochs=1, max_train_images=0)


def test_key_follows_every_setting(smallcnn1):
    versions = {"tensorflow": "2.21.0", "tf_keras": "2.21.0", "numpy": "2.0"}
    base = cache_key(smallcnn1, "mnist", SETTINGS, versions)
    assert base == cache_key(smallcnn1, "mnist", TrainingSettings(epochs=1, max_train_images=300), dict(versions))
    variants = [
        cache_key(smallcnn1, "mnist", TrainingSettings(epochs=1, max_train_images=300, seed=1), versions),
        cache_key(smallcnn1, "mnist", TrainingSettings(epochs=2, max_train_images=300), versions),
        cache_key(smallcnn1, "mnist", TrainingSettings(epochs=1, max_train_images=301), versions),
        cache_key(smallcnn1, "mnist", TrainingSettings(epochs=1, max_train_images=300, batch_size=64), versions),
        cache_key(smallcnn1, "mnist", TrainingSettings(epochs=1, max_train_images=300, learning_rate=1e-4), versions),
        cache_key(smallcnn1, "mnist", TrainingSettings(epochs=1, max_train_images=300, early_stopping=2), versions),
        cache_key(smallcnn1, "cifar10", SETTINGS, versions),
        cache_key(smallcnn1, "mnist", SETTINGS, versions | {"tensorflow": "2.22.0"}),
        cache_key(smallcnn1.with_avg_pooling(), "mnist", SETTINGS, versions),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    # the name is not part of the key: a renamed copy of the same network is the same model
    from dataclasses import replace

    assert cache_key(replace(smallcnn1, name="Copy"), "mnist", SETTINGS, versions) == base


def test_key_includes_the_training_code(smallcnn1, monkeypatch):
    """The key hashes training.py's source (computed here independently), so
    an edit of the training code is a cache miss."""
    import hashlib
    from pathlib import Path

    import effmodel.training as training

    source = Path(training.__file__).read_bytes()
    assert training.training_code_version() == hashlib.sha256(source).hexdigest()[:12]
    versions = {"tensorflow": "2.21.0"}
    base = cache_key(smallcnn1, "mnist", SETTINGS, versions)
    monkeypatch.setattr(training, "training_code_version", lambda: hashlib.sha256(source + b"# edit").hexdigest()[:12])
    assert cache_key(smallcnn1, "mnist", SETTINGS, versions) != base


def test_train_miss_then_hit_and_stale_tmp_ignored(smallcnn1, mnist, tmp_path, monkeypatch):
    from effmodel.keras_compat import versions
    from effmodel.training import train

    ds, arrays = mnist
    cache = tmp_path / "cache"
    cache.mkdir()
    key = cache_key(smallcnn1, smallcnn1.dataset, SETTINGS, versions())

    # an interrupted run of another process: a temporary folder that looks complete
    stale = cache / f".tmp-{key}-999999"
    stale.mkdir()
    (stale / "model.h5").write_bytes(b"not a model")
    (stale / "meta.json").write_text(json.dumps({"test_accuracy": 1.0}))

    first = train(smallcnn1, arrays, ds.validation_fraction, SETTINGS, cache, verbose=0)
    assert not first.cache_hit
    assert first.key == key and first.path == cache / key / "model.h5"
    assert first.path.is_file() and first.path.read_bytes() != b"not a model"
    meta = first.metadata
    assert meta["train_images"] == 300 and meta["validation_images"] == 60 and meta["epochs_run"] == 1
    assert meta["settings"]["seed"] == 0 and meta["key"] == key
    assert 0.1 < first.test_accuracy <= 1.0 and first.test_accuracy != 1.0  # not the stale meta
    assert (cache / key / "logs").is_dir()
    # this process's own temporary folder and the epoch checkpoint are gone; the only
    # entry is the complete one (beside the training lock file, which stays)
    assert [p.name for p in cache.iterdir() if not p.name.startswith((".tmp-", ".lock-"))] == [key]
    assert not (cache / f".ckpt-{key}").exists()
    assert not list(cache.glob(f".tmp-{key}-{os.getpid()}"))

    mtime = first.path.stat().st_mtime_ns
    second = train(smallcnn1, arrays, ds.validation_fraction, SETTINGS, cache, verbose=0)
    assert second.cache_hit and second.key == key and second.path == first.path
    assert second.path.stat().st_mtime_ns == mtime  # not retrained, not rewritten
    assert second.test_accuracy == first.test_accuracy

    # Changed training code (its hash is in the key) never reuses this entry:
    # a kept cache (CI's) cannot stand in for training by the current code.
    import effmodel.training as training

    monkeypatch.setattr(training, "training_code_version", lambda: "changed-code")
    third = train(smallcnn1, arrays, ds.validation_fraction, SETTINGS, cache, verbose=0)
    assert not third.cache_hit and third.key != key
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith((".tmp-", ".lock-"))) == sorted([key, third.key])


def test_incomplete_entry_is_not_a_hit(smallcnn1, mnist, tmp_path):
    """An entry folder without meta.json (or without model.h5) is retrained."""
    from effmodel.keras_compat import versions
    from effmodel.training import train

    ds, arrays = mnist
    settings = TrainingSettings(epochs=1, max_train_images=100, seed=3)
    key = cache_key(smallcnn1, smallcnn1.dataset, settings, versions())
    half = tmp_path / key
    half.mkdir()
    (half / "model.h5").write_bytes(b"half-written")
    assert train(smallcnn1, arrays, ds.validation_fraction, settings, tmp_path, verbose=0).cache_hit is False
