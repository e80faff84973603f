"""``effmodel run --model-file``: a model trained outside effmodel, end to end.

The model is built and trained here with plain tf_keras, in a layer order
effmodel never generates (a separate ReLU layer, 'same' after 'valid',
average pooling, a stride-2 convolution), saved as ``.h5``, and run through
every installed simulator.  Its stored counts must equal those of the same
architecture written by hand as a spec.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from effmodel.cli import main
from effmodel.counting import count_network
from effmodel.specs import spec_from_dict

pytestmark = pytest.mark.slow

HAND = {
    "name": "hand", "dataset": "mnist", "input_shape": [28, 28, 1],
    "layers": [
        {"type": "conv2d", "filters": 6, "kernel": 5},
        {"type": "conv2d", "filters": 8, "kernel": 3, "padding": "same"},
        {"type": "avgpool", "pool": 2},
        {"type": "dropout", "rate": 0.2},
        {"type": "conv2d", "filters": 12, "kernel": 3, "stride": 2, "padding": "same"},
        {"type": "flatten"},
        {"type": "dense", "units": 10, "activation": "softmax"},
    ],
}


@pytest.fixture(scope="module")
def outside_h5(data_dir, tmp_path_factory):
    from effmodel import plugins
    from effmodel.datasets import to_float
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    L = keras.layers
    arrays = plugins.get_datasets()["mnist"].load(data_dir)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        L.InputLayer(input_shape=(28, 28, 1)),
        L.Conv2D(6, 5, activation="relu", name="first"),
        L.Conv2D(8, 3, padding="same", name="second"),
        L.Activation("relu", name="second_relu"),
        L.AveragePooling2D(2, name="pool"),
        L.Dropout(0.2, name="drop"),
        L.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="third"),
        L.Flatten(name="flat"),
        L.Dense(10, activation="softmax", name="out"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(to_float(arrays.x_train[:2000]), arrays.y_train[:2000], epochs=2, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("byo") / "outside.h5"
    model.save(str(path))
    return path


def _simulators() -> list[str]:
    from effmodel import plugins

    return [s for s in ("inisim", "norse") if s in plugins.get_simulators()]


@pytest.mark.parametrize("simulator", ["inisim", "norse"])
def test_model_file_runs_end_to_end(simulator, outside_h5, data_dir, tmp_path):
    if simulator not in _simulators():
        pytest.skip(f"simulator plugin {simulator!r} is not installed")
    out = tmp_path / "out"
    rc = main([
        "run", "--simulator", simulator, "--model-file", str(outside_h5), "--num-test", "40", "--duration", "40",
        "--batch-size", "20", "--norm-images", "500", "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache"),
        "--output", str(out),
    ])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1
    row = rows[0]
    want = count_network(spec_from_dict(HAND))
    assert (row["model"], row["dataset"], row["simulator"], row["family"]) == ("outside", "mnist", simulator, "byo")
    assert int(row["params"]) == want.params
    assert int(row["ann_macs"]) == want.macs
    assert int(row["ann_flops"]) == want.flops_exact
    assert int(row["depth"]) == 3  # three conv layers and no hidden dense layer
    assert float(row["synops_total"]) > 0
    # 2 epochs on 2,000 images: the ANN is far above chance, and so is the SNN at T=40
    assert float(row["ann_accuracy"]) > 0.7
    assert float(row["snn_accuracy"]) > 0.5
    steps = [r for r in csv.DictReader(open(out / "timesteps.csv"))]
    cum = np.array([float(r["synops_cumulative"]) for r in steps])
    assert len(cum) == 40 and np.all(np.diff(cum) >= 0)


def test_unsupported_model_file_writes_nothing(data_dir, tmp_path):
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    model = keras.Sequential([
        keras.layers.InputLayer(input_shape=(28, 28, 1)),
        keras.layers.Conv2D(4, 3),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    path = tmp_path / "bn.h5"
    model.save(str(path))
    out = tmp_path / "out"
    rc = main(["run", "--simulator", _simulators()[0] if _simulators() else "inisim", "--model-file", str(path),
               "--data-dir", str(data_dir), "--output", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert rc != 0
    assert not (out / "effmodel.sqlite").exists()


def test_export_nir_from_model_file(outside_h5, data_dir, tmp_path):
    """``export --model-file`` writes a NIR graph that ``nir.read`` loads back;
    what NIR cannot express (asymmetric 'same' padding of the stride-2 layer
    of the outside model) is a one-line error and writes nothing."""
    nir = pytest.importorskip("nir")
    pytest.importorskip("effmodel_norse")
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    L = keras.layers
    simple = keras.Sequential([L.InputLayer(input_shape=(28, 28, 1)), L.Conv2D(4, 3, activation="relu", name="c"),
                               L.AveragePooling2D(2, name="p"), L.Flatten(name="f"), L.Dense(10, activation="softmax", name="d")])
    path = tmp_path / "simple.h5"
    simple.save(str(path))
    common = ["--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "simple.nir"
    assert main(["export", "--format", "nir", "--model-file", str(path), "--output", str(out), *common]) == 0
    graph = nir.read(str(out))
    assert sum(type(n).__name__ == "Conv2d" for n in graph.nodes.values()) == 1
    assert sum(type(n).__name__ == "Affine" for n in graph.nodes.values()) == 1

    bad = tmp_path / "outside.nir"
    assert main(["export", "--format", "nir", "--model-file", str(outside_h5), "--output", str(bad), *common]) == 2
    assert not bad.exists()
