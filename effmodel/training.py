"""Train the ANN of a spec with the Keras 2 API, cached under a content key.

The key hashes everything that changes the trained weights: the network
(layers, not its name), dataset, seed, epochs, batch size, learning rate,
early stopping, training-set size, library versions and the source of this
module (:func:`training_code_version`).  A cache entry is a
folder ``<cache>/<key>/`` with ``model.h5``, ``meta.json`` and TensorBoard
``logs/``; it is written to a temporary folder and renamed into place, so an
interrupted run never leaves an entry that looks complete.

Training is resumable: after every epoch the weights, Adam's state, the
early-stopping state and the history are checkpointed atomically in
``<cache>/.ckpt-<key>/checkpoint.npz``; a killed or time-budget-stopped
training resumes from its last finished epoch and ends with bit-identical
weights (each epoch starts from a fresh model set to the checkpoint, with a
seed and image order that depend on the seed and the epoch only).  A
``.lock-<key>`` file makes a second process wait for the first rather than
train the same entry twice.
"""

from __future__ import annotations

import contextlib
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

from .budget import BudgetExhausted
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


class TrainingBudgetExhausted(BudgetExhausted):
    """The next epoch would not finish before the deadline: training stopped
    after its last finished epoch, which is checkpointed (:func:`train` resumes
    from it).  Not an error: the time-budgeted driver counts the item as left."""

    def __init__(self, model: str, epochs_done: int, epochs: int) -> None:
        super().__init__(f"{model}: stopped by the time budget after epoch {epochs_done} of {epochs} (checkpointed)")
        self.model, self.epochs_done, self.epochs = model, epochs_done, epochs


def epoch_seed(seed: int, epoch: int) -> int:
    """The random seed of one epoch (dropout masks, the shuffle): a function of
    the run's seed and the epoch alone, so a resumed training draws what an
    uninterrupted one draws."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which one epoch visits the ``n`` training images."""
    return np.random.default_rng([seed, epoch]).permutation(n)


CHECKPOINT = "checkpoint.npz"


def _checkpoint_dir(cache: Path, key: str) -> Path:
    """Per-epoch training state of an unfinished cache entry (see :func:`train`)."""
    return cache / f".ckpt-{key}"


def _save_checkpoint(directory: Path, model, state: Mapping[str, Any], best_weights: list[np.ndarray] | None) -> None:
    """Write the state after an epoch atomically: weights, the optimiser's
    variables (Adam's step and moments), the early-stopping state and history."""
    arrays: dict[str, np.ndarray] = {}
    for i, w in enumerate(model.get_weights()):
        arrays[f"w{i}"] = w
    for i, v in enumerate(model.optimizer.variables):
        arrays[f"o{i}"] = np.asarray(v.numpy())
    for i, w in enumerate(best_weights or []):
        arrays[f"b{i}"] = w
    arrays["state"] = np.frombuffer(json.dumps(dict(state)).encode(), dtype=np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / CHECKPOINT)


def _load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]] | None:
    """The last finished epoch's state, or None (no checkpoint, or one that
    does not read back: it is then ignored and training starts over)."""
    path = directory / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            state = json.loads(bytes(z["state"]).decode())

            def group(prefix: str) -> list[np.ndarray]:
                n = sum(1 for k in z.files if k.startswith(prefix) and k[1:].isdigit())
                return [np.array(z[f"{prefix}{i}"]) for i in range(n)]

            return state, {"weights": group("w"), "optimizer": group("o"), "best": group("b")}
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _compiled_model(spec: ArchitectureSpec, settings: TrainingSettings, keras, weights=None, optimizer_state=None):
    """A fresh model and Adam optimiser, set to a checkpointed state if given."""
    model = build_model(spec)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    if weights:
        model.set_weights(weights)
    if optimizer_state:
        model.optimizer.build(model.trainable_variables)
        variables = model.optimizer.variables
        if len(variables) != len(optimizer_state):
            raise DataError(f"{spec.name}: the training checkpoint holds {len(optimizer_state)} optimiser variables, "
                            f"the model has {len(variables)}")
        for v, a in zip(variables, optimizer_state):
            v.assign(a)
    return model


def epochs_done(spec: ArchitectureSpec, settings: TrainingSettings, cache: Path) -> int:
    """Epochs of ``spec``'s training already done: ``settings.epochs`` when the
    cache holds the trained model (even one stopped early), the checkpointed
    epoch when a training was interrupted, else 0.  Imports TensorFlow (the
    cache key holds its version)."""
    from .keras_compat import versions

    key = cache_key(spec, spec.dataset, settings, versions())
    if (cache / key / "meta.json").is_file() and (cache / key / "model.h5").is_file():
        return settings.epochs
    loaded = _load_checkpoint(_checkpoint_dir(cache, key))
    if loaded is None:
        return 0
    state = loaded[0]
    return settings.epochs if state.get("stopped") else int(state.get("epoch", 0))


@contextlib.contextmanager
def _training_lock(cache: Path, key: str):
    """One process at a time trains a cache key (a second one waits, then
    finds the entry); the kernel drops the lock when its holder dies."""
    import fcntl

    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".lock-{key}", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cached(spec: ArchitectureSpec, entry: Path, key: str, fingerprint: str | None = None) -> TrainedModel | None:
    """The complete cache entry, or None.  An entry trained on other data
    under the same dataset name (its recorded ``dataset_fingerprint`` differs;
    entries without one are reused) is removed, as is a damaged one."""
    if (entry / "meta.json").is_file() and (entry / "model.h5").is_file():
        meta = _valid_entry_meta(entry)
        if meta is not None:
            stored = meta.get("dataset_fingerprint")
            if fingerprint is None or stored is None or stored == fingerprint:
                return TrainedModel(spec=spec, path=entry / "model.h5", key=key, metadata=meta, cache_hit=True)
            print(f"{spec.name}: the cached model {entry} was trained on other {spec.dataset} data (fingerprint "
                  f"{stored}, now {fingerprint}); training it again", file=sys.stderr)
        else:
            print(f"{spec.name}: the cached model {entry} is truncated or damaged; training it again", file=sys.stderr)
        shutil.rmtree(entry, ignore_errors=True)
    return None


def train(
    spec: ArchitectureSpec,
    arrays: Arrays,
    validation_fraction: float,
    settings: TrainingSettings,
    cache: Path,
    verbose: int | None = None,
    deadline: float | None = None,
    epoch_seconds_guess: float | None = None,
    dataset_fingerprint: str | None = None,
) -> TrainedModel:
    """Train ``spec`` (or reuse the cache) and return the cached model.

    Training runs epoch by epoch; after each one the weights, the optimiser's
    state, the early-stopping state and the history are checkpointed under
    ``<cache>/.ckpt-<key>/``, and a killed or budget-stopped training resumes
    from its last finished epoch.  Every epoch starts from a fresh model set
    to the checkpointed state, with its own seed (:func:`epoch_seed`) and
    image order (:func:`epoch_order`), so resumed and uninterrupted training
    run the same computation.

    :param deadline: a ``time.time()`` by which training must stop: an epoch
        that is not expected to finish by then is not started, and
        :class:`TrainingBudgetExhausted` is raised.  The expected epoch time
        is the slowest epoch of this call so far, else ``epoch_seconds_guess``
        (else the epoch is started).
    :param dataset_fingerprint: what the training data contained
        (:func:`effmodel.datasets.dataset_fingerprint`), recorded in the
        entry's ``meta.json``: a cached model trained on other data under the
        same dataset name is trained again.  It is not part of the key, so
        entries written before it was recorded stay valid.
    """
    from .keras_compat import import_keras, versions

    keras = import_keras()
    vers = versions()
    key = cache_key(spec, spec.dataset, settings, vers)
    entry = cache / key
    hit = _cached(spec, entry, key, dataset_fingerprint)
    if hit is not None:
        return hit
    if tuple(arrays.x_train.shape[1:]) != tuple(spec.input_shape):
        raise DataError(f"{spec.name} expects inputs {spec.input_shape}, the dataset has {arrays.x_train.shape[1:]}")
    with _training_lock(cache, key):
        hit = _cached(spec, entry, key, dataset_fingerprint)  # another process may have finished it while we waited
        if hit is not None:
            return hit
        return _train_locked(spec, arrays, validation_fraction, settings, cache, key, vers, keras, verbose,
                             deadline, epoch_seconds_guess, dataset_fingerprint)


def _train_locked(spec, arrays, validation_fraction, settings, cache, key, vers, keras, verbose, deadline,
                  epoch_seconds_guess, dataset_fingerprint) -> TrainedModel:
    entry = cache / key
    meta_path = entry / "meta.json"
    xtr, ytr, xva, yva = split_train_validation(arrays.x_train, arrays.y_train, validation_fraction)
    if settings.max_train_images is not None:
        xtr, ytr = xtr[: settings.max_train_images], ytr[: settings.max_train_images]
        xva, yva = xva[: max(settings.max_train_images // 5, 1)], yva[: max(settings.max_train_images // 5, 1)]
    ckpt = _checkpoint_dir(cache, key)
    loaded = _load_checkpoint(ckpt)
    if loaded is not None and loaded[0].get("dataset_fingerprint") not in (None, dataset_fingerprint):
        print(f"{spec.name}: the training checkpoint {ckpt} was made on other {spec.dataset} data; starting over",
              file=sys.stderr, flush=True)
        loaded = None
    if loaded is not None:
        state, saved = loaded
        print(f"{spec.name}: resuming training after epoch {state['epoch']} of {settings.epochs} "
              f"(checkpoint {ckpt})", file=sys.stderr, flush=True)
    else:
        state = {"epoch": 0, "history": {}, "best": None, "best_epoch": None, "wait": 0, "stopped": False,
                 "train_seconds": 0.0, "resumed_at": [], "dataset_fingerprint": dataset_fingerprint}
        saved = {"weights": [], "optimizer": [], "best": []}
    if state["epoch"] > 0:
        state["resumed_at"] = list(state.get("resumed_at", [])) + [state["epoch"]]
    if verbose is None:
        verbose = 1 if sys.stderr.isatty() else 2
    x_train, x_val = to_float(xtr), to_float(xva)
    best_weights = saved["best"] or None
    weights, optimizer_state = saved["weights"] or None, saved["optimizer"] or None
    slowest = 0.0
    model = None
    while state["epoch"] < settings.epochs and not state["stopped"]:
        epoch = state["epoch"]
        expected = slowest or epoch_seconds_guess
        if deadline is not None and expected is not None and time.time() + expected > deadline:
            raise TrainingBudgetExhausted(spec.name, epoch, settings.epochs)
        started = time.perf_counter()
        keras.backend.clear_session()
        keras.utils.set_random_seed(epoch_seed(settings.seed, epoch))
        model = _compiled_model(spec, settings, keras, weights, optimizer_state)
        order = epoch_order(settings.seed, epoch, len(x_train))
        callbacks: list[Any] = [keras.callbacks.TensorBoard(log_dir=str(ckpt / "logs"), histogram_freq=0)]
        history = model.fit(
            x_train[order], ytr[order], validation_data=(x_val, yva), initial_epoch=epoch, epochs=epoch + 1,
            batch_size=settings.batch_size, shuffle=False, callbacks=callbacks, verbose=verbose,
        )
        for k, vs in history.history.items():
            state["history"].setdefault(k, []).extend(float(v) for v in vs)
        state["epoch"] = epoch + 1
        if settings.early_stopping:
            val_loss = float(history.history["val_loss"][-1])
            state["wait"] += 1
            if state["best"] is None or val_loss < state["best"]:
                state.update(best=val_loss, best_epoch=epoch + 1, wait=0)
                best_weights = model.get_weights()
            elif state["wait"] >= settings.early_stopping:
                state["stopped"] = True
        weights = model.get_weights()
        optimizer_state = [np.asarray(v.numpy()) for v in model.optimizer.variables]
        wall = time.perf_counter() - started
        slowest = max(slowest, wall)
        state["train_seconds"] += wall
        _save_checkpoint(ckpt, model, state, best_weights)
        fault_point("train-epoch", f"{spec.name}:{epoch + 1}")
    if model is None:  # every epoch was done before a kill: rebuild from the checkpoint
        model = _compiled_model(spec, settings, keras, weights)
    if settings.early_stopping and best_weights:
        model.set_weights(best_weights)  # as Keras' EarlyStopping(restore_best_weights=True) at the end
    test_acc = evaluate(model, arrays.x_test, arrays.y_test)
    tmp = cache / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    _remove_stale_tmp(cache, key)
    tmp.mkdir(parents=True)
    try:
        fault_point("train", spec.name)  # killed here: a half-written entry, removed by the next training
        model.save(str(tmp / "model.h5"), include_optimizer=False)
        if (ckpt / "logs").is_dir():
            shutil.copytree(ckpt / "logs", tmp / "logs")
        meta = {
            "model": spec.name, "dataset": spec.dataset, "key": key, "spec": spec.to_dict(),
            "settings": asdict(settings), "versions": vers, "train_images": int(len(xtr)),
            "validation_images": int(len(xva)), "epochs_run": state["epoch"],
            "best_epoch": state["best_epoch"], "resumed_at_epochs": state["resumed_at"],
            "history": state["history"], "test_accuracy": test_acc, "train_seconds": state["train_seconds"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "model_sha256": _sha256(tmp / "model.h5"),
            "dataset_fingerprint": dataset_fingerprint,
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
    shutil.rmtree(ckpt, ignore_errors=True)
    meta = json.loads(meta_path.read_text())
    return TrainedModel(spec=spec, path=entry / "model.h5", key=key, metadata=meta, cache_hit=False)
