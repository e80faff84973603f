"""Bring-your-own-model import (``effmodel.keras_import``) on real MNIST.

Reference predictions always come from an independent implementation: the
Keras model that was trained (tf_keras), a genuine old Keras (2.0.8 and 2.2.4
with Theano; fixtures in ``tests/fixtures``, written by
``tests/fixtures/legacy_keras.py`` in a subprocess), or a numpy
channels_first forward pass written here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest

from effmodel.counting import count_network
from effmodel.errors import DataError, UsageError
from effmodel.forward import predict
from effmodel.keras_import import load_model_file
from effmodel.specs import spec_from_dict

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).parent / "fixtures"
LEGACY = {  # fixture -> does its Flatten reorder (c, h, w) to (h, w, c)?
    "keras208_theano_cf.h5": False,  # Keras 2.0.8: Flatten has no data_format
    "keras224_theano_cf.h5": True,  # Keras 2.2.4: Flatten(data_format='channels_first')
}
N_LEGACY = 64  # the fixtures' predictions are on the first 64 MNIST test images


@pytest.fixture(scope="module")
def keras():
    from effmodel.keras_compat import import_keras

    return import_keras()


@pytest.fixture(scope="module")
def mnist(data_dir):
    from effmodel import plugins

    return plugins.get_datasets()["mnist"].load(data_dir)


def _f(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 255.0


# --- 1. a model trained outside effmodel ----------------------------------------------

HAND_SPEC = {
    "name": "outside", "dataset": "mnist", "input_shape": [28, 28, 1],
    "layers": [
        {"type": "conv2d", "name": "edge_detector", "filters": 6, "kernel": 5},
        {"type": "conv2d", "name": "mixer", "filters": 8, "kernel": 3, "padding": "same"},
        {"type": "avgpool", "name": "shrink", "pool": 2},
        {"type": "dropout", "name": "noise", "rate": 0.2},
        {"type": "conv2d", "name": "deep", "filters": 12, "kernel": 3, "stride": 2, "padding": "same"},
        {"type": "maxpool", "name": "squeeze", "pool": 2, "padding": "same"},
        {"type": "flatten", "name": "vector"},
        {"type": "dense", "name": "hidden", "units": 24},
        {"type": "dense", "name": "classes", "units": 10, "activation": "softmax"},
    ],
}


def _outside_layers(keras):
    """A layer order effmodel never generates, with a separate ReLU layer."""
    L = keras.layers
    return [
        L.Conv2D(6, 5, padding="valid", activation="relu", name="edge_detector"),
        L.Conv2D(8, 3, padding="same", strides=1, name="mixer"),
        L.Activation("relu", name="mixer_relu"),
        L.AveragePooling2D(2, name="shrink"),
        L.Dropout(0.2, name="noise"),
        L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="deep"),
        L.MaxPooling2D(2, padding="same", name="squeeze"),
        L.Flatten(name="vector"),
        L.Dense(24, activation="relu", name="hidden"),
        L.Dense(10, activation="softmax", name="classes"),
    ]


@pytest.fixture(scope="module")
def outside(keras, mnist, tmp_path_factory):
    """Train the outside model 1 epoch on 1000 images; save .h5 and .keras."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.InputLayer(input_shape=(28, 28, 1), name="pixels"), *_outside_layers(keras)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(_f(mnist.x_train[:1000]), mnist.y_train[:1000], epochs=1, batch_size=50, verbose=0)
    d = tmp_path_factory.mktemp("outside")
    model.save(str(d / "outside.h5"))
    model.save(str(d / "outside.keras"))
    x = _f(mnist.x_test[:300])
    return d, model, x, model.predict(x, verbose=0)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_outside_model_matches_hand_spec_and_keras(outside, keras, suffix, tmp_path):
    """Spec, counts and numpy predictions equal the hand spec and the Keras model."""
    d, _, x, expected = outside
    m = load_model_file(d / f"outside{suffix}", workdir=tmp_path)
    hand = spec_from_dict(HAND_SPEC)
    assert m.spec.layers == hand.layers
    assert (m.spec.name, m.spec.dataset, m.spec.input_shape) == ("outside", "mnist", (28, 28, 1))
    got, want = count_network(m.spec), count_network(hand)
    assert [astuple(l) for l in got.layers] == [astuple(l) for l in want.layers]
    assert (got.macs, got.synapses, got.flops_exact, got.params) == (want.macs, want.synapses, want.flops_exact, want.params)
    assert any("folded 'mixer_relu'" in n for n in m.notes)
    np.testing.assert_allclose(predict(m.spec, m.weights, x), expected, atol=2e-6)
    # the converted .h5 (layer names = spec names) reloads in tf_keras with the same outputs
    assert m.model_path.parent == tmp_path and m.model_path.suffix == ".h5"
    reloaded = keras.models.load_model(str(m.model_path), compile=False)
    assert [l.name for l in reloaded.layers] == [l.name for l in m.spec.layers]
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=2e-6)


def test_functional_chain_and_branch(outside, keras, tmp_path):
    """A functional linear chain imports like the Sequential; a branch is refused."""
    _, trained, x, expected = outside
    inp = keras.Input((28, 28, 1), name="img")
    h = inp
    for layer in _outside_layers(keras):
        h = layer(h)
    functional = keras.Model(inp, h)
    functional.set_weights(trained.get_weights())
    functional.save(str(tmp_path / "functional.h5"))
    m = load_model_file(tmp_path / "functional.h5", workdir=tmp_path / "w")
    assert m.spec.layers == spec_from_dict(HAND_SPEC).layers
    np.testing.assert_allclose(predict(m.spec, m.weights, x), expected, atol=2e-6)

    L = keras.layers
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="left")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="right")(inp)
    out = L.Dense(10, activation="softmax")(L.Flatten()(L.Add(name="merge")([a, b])))
    keras.Model(inp, out).save(str(tmp_path / "branch.h5"))
    with pytest.raises(DataError, match="merge") as exc:
        load_model_file(tmp_path / "branch.h5", workdir=tmp_path / "w")
    assert "\n" not in str(exc.value)


def test_effmodel_shaped_file_is_used_as_is(keras, tmp_path):
    """A channels_last .h5 whose layers map 1:1 onto the spec is not rewritten."""
    from effmodel.training import build_model

    build_model(spec_from_dict(HAND_SPEC)).save(str(tmp_path / "plain.h5"))
    m = load_model_file(tmp_path / "plain.h5", dataset="mnist", name="Plain", workdir=tmp_path / "w")
    assert m.model_path == tmp_path / "plain.h5" and m.spec.name == "Plain" and m.reader == "tf_keras"
    assert not (tmp_path / "w").exists()


# --- 2. legacy channels_first files from genuine old Keras ---------------------------------


def _weights_by_name(path: Path) -> dict[str, list[np.ndarray]]:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        for lname in g.attrs["layer_names"]:
            lg = g[lname]
            out[lname.decode() if isinstance(lname, bytes) else lname] = [
                lg[n][()] for n in lg.attrs["weight_names"]
            ]
    return out


def channels_first_reference(path: Path, x_nhwc: np.ndarray, flatten_reorders: bool, theano: bool) -> np.ndarray:
    """Numpy NCHW forward pass of conv(5x5, valid, relu) -> maxpool 2 -> flatten -> dense softmax."""
    w = _weights_by_name(path)
    kernel, bias = w["c1"]
    dense, dense_bias = w["out"]
    if theano:  # Theano computes a true convolution: correlate with the flipped kernel
        kernel = kernel[::-1, ::-1]
    x = x_nhwc.transpose(0, 3, 1, 2)  # NCHW
    k = kernel.shape[0]
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))  # N C H W k k
    z = np.einsum("ncijab,abcf->nfij", win, kernel) + bias[None, :, None, None]
    z = np.maximum(z, 0)
    n, f, h, wd = z.shape
    z = z.reshape(n, f, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    flat = z.transpose(0, 2, 3, 1).reshape(n, -1) if flatten_reorders else z.reshape(n, -1)
    logits = flat @ dense + dense_bias
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("fixture", sorted(LEGACY))
def test_genuine_legacy_channels_first(fixture, mnist, keras, tmp_path):
    """Keras 2.0.8/2.2.4 (Theano, channels_first) files predict as old Keras did."""
    path = FIXTURES / fixture
    keras_pred = np.load(path.with_name(path.stem + "_pred.npy"))
    x = _f(mnist.x_test[:N_LEGACY])
    reorders = LEGACY[fixture]
    # the independent numpy reference reproduces old Keras itself...
    np.testing.assert_allclose(channels_first_reference(path, x, reorders, theano=True), keras_pred, atol=1e-5)
    # ...and the other Flatten semantics would not (so the row order is really tested)
    assert np.abs(channels_first_reference(path, x, not reorders, theano=True) - keras_pred).max() > 1e-2

    for reader in ("auto", "h5py"):
        m = load_model_file(path, workdir=tmp_path, reader=reader)
        assert m.spec.input_shape == (28, 28, 1) and m.spec.dataset == "mnist" and m.backend == "theano"
        assert m.keras_version == ("2.0.8" if "208" in fixture else "2.2.4")
        assert any("channels_first" in n for n in m.notes)
        assert any("reordered" in n for n in m.notes) is (not reorders)
        np.testing.assert_allclose(predict(m.spec, m.weights, x), keras_pred, atol=1e-5)
    reloaded = keras.models.load_model(str(m.model_path), compile=False)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), keras_pred, atol=1e-5)


def test_keras208_flatten_ignores_current_image_data_format(mnist, keras, tmp_path):
    """A Keras 2.0.8 Flatten (no data_format stored) keeps its stored order even
    when this process' tf_keras default data format is channels_first."""
    path = FIXTURES / "keras208_theano_cf.h5"
    old = keras.backend.image_data_format()
    keras.backend.set_image_data_format("channels_first")
    try:
        m = load_model_file(path, workdir=tmp_path, reader="tf_keras")
    finally:
        keras.backend.set_image_data_format(old)
    x = _f(mnist.x_test[:N_LEGACY])
    np.testing.assert_allclose(predict(m.spec, m.weights, x), np.load(FIXTURES / "keras208_theano_cf_pred.npy"), atol=1e-5)


def test_legacy_tensorflow_backend_kernels_not_flipped(mnist, tmp_path):
    """The same Keras 2.2.4 model as a TensorFlow-backend file (kernels stored
    pre-flipped, as Keras' loader would convert them) predicts the same."""
    import h5py

    src = FIXTURES / "keras224_theano_cf.h5"
    dst = tmp_path / "keras224_tf_cf.h5"
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f.attrs["backend"] = b"tensorflow"
        g = f["model_weights/c1"]
        k = g[g.attrs["weight_names"][0]]  # the kernel, under Theano's variable name
        k[...] = k[()][::-1, ::-1]
        f["model_weights"].attrs["backend"] = b"tensorflow"
    x = _f(mnist.x_test[:N_LEGACY])
    keras_pred = np.load(FIXTURES / "keras224_theano_cf_pred.npy")
    np.testing.assert_allclose(channels_first_reference(dst, x, True, theano=False), keras_pred, atol=1e-5)
    m = load_model_file(dst, workdir=tmp_path / "w")
    assert m.backend == "tensorflow" and not any("flipped" in n for n in m.notes)
    np.testing.assert_allclose(predict(m.spec, m.weights, x), keras_pred, atol=1e-5)


@pytest.mark.skipif(not os.environ.get("EFFMODEL_OLD_KERAS_PYTHON"), reason="set EFFMODEL_OLD_KERAS_PYTHON to a Python with Keras 2.x + Theano")
def test_legacy_file_built_now_in_subprocess(mnist, tmp_path):
    """Build a channels_first model with the old Keras in a subprocess, then import it."""
    np.savez(tmp_path / "data.npz", x_train=mnist.x_train[:1000], y_train=mnist.y_train[:1000], x_test=mnist.x_test[:N_LEGACY])
    env = {**os.environ, "HOME": str(tmp_path), "THEANO_FLAGS": f"blas.ldflags=,base_compiledir={tmp_path / 'theano'}"}
    subprocess.run(
        [os.environ["EFFMODEL_OLD_KERAS_PYTHON"], str(FIXTURES / "legacy_keras.py"), "data.npz", "m.h5", "pred.npy"],
        cwd=tmp_path, env=env, check=True, timeout=900, capture_output=True,
    )
    m = load_model_file(tmp_path / "m.h5", workdir=tmp_path / "w")
    np.testing.assert_allclose(predict(m.spec, m.weights, _f(mnist.x_test[:N_LEGACY])), np.load(tmp_path / "pred.npy"), atol=1e-5)


# --- 3. refused inputs: one line each ------------------------------------------------------------


def _one_line_error(exc_type, path, match, **kwargs):
    with pytest.raises(exc_type, match=match) as exc:
        load_model_file(path, **kwargs)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_unsupported_layers(keras, tmp_path):
    """BatchNormalization, LSTM, tanh hidden activations: named in one line."""
    L = keras.layers
    bn = keras.Sequential([L.InputLayer(input_shape=(28, 28, 1)), L.Conv2D(4, 3, name="c"), L.BatchNormalization(name="bn"),
                           L.ReLU(), L.Flatten(), L.Dense(10, activation="softmax")])
    bn.save(str(tmp_path / "bn.h5"))
    msg = _one_line_error(DataError, tmp_path / "bn.h5", r"'bn' \(BatchNormalization\)", workdir=tmp_path)
    assert "Conv2D" in msg and "Dense" in msg  # lists what is supported
    rnn = keras.Sequential([L.InputLayer(input_shape=(28, 28)), L.LSTM(4, name="rnn"), L.Dense(10, activation="softmax")])
    rnn.save(str(tmp_path / "rnn.keras"))
    _one_line_error(DataError, tmp_path / "rnn.keras", r"'rnn' \(LSTM\)", workdir=tmp_path)
    tanh = keras.Sequential([L.InputLayer(input_shape=(28, 28, 1)), L.Conv2D(4, 3, activation="tanh", name="t"),
                             L.Flatten(), L.Dense(10, activation="softmax")])
    tanh.save(str(tmp_path / "tanh.h5"))
    _one_line_error(DataError, tmp_path / "tanh.h5", r"'t'.*tanh", workdir=tmp_path)


def test_corrupt_truncated_and_unknown_files(outside, tmp_path):
    """Truncated/garbage .h5 and .keras, unknown suffix, missing file: one line."""
    d = outside[0]
    for suffix in (".h5", ".keras"):
        blob = (d / f"outside{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(blob[: len(blob) // 2])
        _one_line_error(DataError, tmp_path / f"cut{suffix}", "corrupt or truncated|cannot", workdir=tmp_path)
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all" * 10)
    _one_line_error(DataError, tmp_path / "junk.h5", "not a readable HDF5", workdir=tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"x")
    _one_line_error(UsageError, tmp_path / "model.onnx", r"\.h5/\.hdf5 or \.keras")
    _one_line_error(UsageError, tmp_path / "missing.h5", "not found")
    # weights-only file: no architecture to read
    outside[1].save_weights(str(tmp_path / "weights_only.h5"))
    _one_line_error(DataError, tmp_path / "weights_only.h5", "weights-only")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
