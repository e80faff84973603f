"""Resumable training (issue 20): a training killed after an epoch, or stopped
by a deadline, resumes from its last finished epoch and ends with the very
weights an uninterrupted training gives, optimiser and early-stopping state
included."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from effmodel.training import TrainingSettings

pytestmark = pytest.mark.slow

# SmallCNN1 has dropout, so the per-epoch seeding is exercised; early stopping
# with patience 1 on 3 epochs keeps a best-weights copy in the checkpoint.
ARGS = ["train", "--models", "SmallCNN1", "--epochs", "3", "--max-train-images", "600", "--early-stopping", "1"]


def _weights(path) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    with h5py.File(path, "r") as f:
        f["model_weights"].visititems(lambda n, o: out.append((n, o[()])) if isinstance(o, h5py.Dataset) else None)
    return sorted(out, key=lambda t: t[0])


def _train(cache, clean_env, data_dir, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "effmodel.cli", *ARGS, "--cache-dir", str(cache), "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=300, env=clean_env(**env))


def _entry(cache):
    entries = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    return entries[0]


def test_killed_training_resumes_to_the_same_weights(tmp_path, clean_env, data_dir):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    first = _train(straight, clean_env, data_dir)
    assert first.returncode == 0, first.stderr
    # killed (SIGKILL) right after epoch 2's checkpoint was written
    killed = _train(resumed, clean_env, data_dir, EFFMODEL_FAULT_KILL_AT="train-epoch@SmallCNN1:2")
    assert killed.returncode == -9
    assert [p.name for p in resumed.iterdir() if not p.name.startswith(".")] == []  # no cache entry yet
    assert len(list(resumed.glob(".ckpt-*/checkpoint.npz"))) == 1
    again = _train(resumed, clean_env, data_dir)
    assert again.returncode == 0, again.stderr
    assert "resuming training after epoch 2 of 3" in again.stderr
    assert "Epoch 1/3" not in again.stdout + again.stderr and "Epoch 2/3" not in again.stdout + again.stderr
    a, b = _weights(_entry(straight) / "model.h5"), _weights(_entry(resumed) / "model.h5")
    assert [n for n, _ in a] == [n for n, _ in b] and len(a) == 6  # conv, dense 64, dense 10: kernel and bias each
    for (name, x), (_, y) in zip(a, b):
        assert np.array_equal(x, y), name
    ma, mb = (json.loads((_entry(c) / "meta.json").read_text()) for c in (straight, resumed))
    assert ma["history"] == mb["history"] and len(ma["history"]["loss"]) == ma["epochs_run"]
    assert ma["resumed_at_epochs"] == [] and mb["resumed_at_epochs"] == [2]
    assert ma["test_accuracy"] == mb["test_accuracy"]
    assert not list(resumed.glob(".ckpt-*"))  # the checkpoint goes once the entry exists


def test_deadline_stops_before_an_epoch_that_would_not_fit(tmp_path, data_dir):
    from effmodel import plugins
    from effmodel.training import TrainingBudgetExhausted, train

    spec = plugins.get_architectures()["SmallCNN1"]
    ds = plugins.get_datasets()["mnist"]
    arrays = ds.load(data_dir)
    settings = TrainingSettings(epochs=2, max_train_images=300)
    # the guess says an epoch takes an hour: nothing is started, nothing written
    with pytest.raises(TrainingBudgetExhausted) as stopped:
        train(spec, arrays, ds.validation_fraction, settings, tmp_path, verbose=0,
              deadline=time.time() + 60, epoch_seconds_guess=3600)
    assert stopped.value.epochs_done == 0 and stopped.value.epochs == 2
    assert not list(tmp_path.glob(".ckpt-*")) and not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    # no guess: the first epoch runs; its measured time then says the second cannot fit
    # in a deadline that is just 1 ms after the first epoch's start
    with pytest.raises(TrainingBudgetExhausted) as stopped:
        train(spec, arrays, ds.validation_fraction, settings, tmp_path, verbose=0, deadline=time.time() + 0.001)
    assert stopped.value.epochs_done == 1
    ckpt = list(tmp_path.glob(".ckpt-*/checkpoint.npz"))
    assert len(ckpt) == 1
    # without a deadline it finishes from the checkpoint: one more epoch
    done = train(spec, arrays, ds.validation_fraction, settings, tmp_path, verbose=0)
    assert done.metadata["epochs_run"] == 2 and done.metadata["resumed_at_epochs"] == [1]
    assert len(done.metadata["history"]["loss"]) == 2


def test_changed_dataset_content_retrains(tmp_path, data_dir):
    """The cache entry records what its data contained: the same dataset name
    with other content (one training pixel changed) is a miss that retrains;
    the same content, or an entry without a recorded fingerprint, is a hit."""
    from dataclasses import replace

    from effmodel import plugins
    from effmodel.datasets import dataset_fingerprint
    from effmodel.training import train

    spec = plugins.get_architectures()["SmallCNN1"]
    ds = plugins.get_datasets()["mnist"]
    arrays = ds.load(data_dir)
    x = arrays.x_train.copy()
    x[0, 0, 0, 0] ^= 1
    changed = replace(arrays, x_train=x)
    old, new = dataset_fingerprint(ds, arrays), dataset_fingerprint(ds, changed)
    assert old != new
    settings = TrainingSettings(epochs=1, max_train_images=200)
    first = train(spec, arrays, ds.validation_fraction, settings, tmp_path, verbose=0, dataset_fingerprint=old)
    assert not first.cache_hit and first.metadata["dataset_fingerprint"] == old
    assert train(spec, arrays, ds.validation_fraction, settings, tmp_path, verbose=0, dataset_fingerprint=old).cache_hit
    again = train(spec, changed, ds.validation_fraction, settings, tmp_path, verbose=0, dataset_fingerprint=new)
    assert not again.cache_hit and again.key == first.key and again.metadata["dataset_fingerprint"] == new
    # an entry from before fingerprints were recorded is reused
    meta = json.loads((again.path.parent / "meta.json").read_text())
    del meta["dataset_fingerprint"]
    (again.path.parent / "meta.json").write_text(json.dumps(meta))
    assert train(spec, arrays, ds.validation_fraction, settings, tmp_path, verbose=0, dataset_fingerprint=old).cache_hit
