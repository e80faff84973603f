"""The dataset contract, enforced on load (issue 23, findings 4 and 5).

Every load is checked: uint8 pixels or floats in [0, 1], integer labels of
shape (N,) in [0, classes), images of the dataset's shape; an architecture
asking for a dataset must match its input shape and number of classes.
Errors are one line naming the dataset's plugin and, where one asked, the
architecture and its plugin.  ``dataset_fingerprint`` identifies content, so
regenerated data under the same name is told apart.

No TensorFlow: the datasets are in-process plugins of seeded random arrays,
except the check that the real MNIST and CIFAR-10 keep the contract.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from effmodel import hookimpl
from effmodel.datasets import Arrays, dataset_fingerprint, loaded_fingerprint, to_float
from effmodel.errors import DataError, UsageError
from effmodel.specs import ArchitectureSpec, LayerSpec

SHAPE = (6, 6, 1)


def _arrays(seed=0, n=20, **override):
    rng = np.random.default_rng(seed)
    a = Arrays(x_train=rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8), y_train=rng.integers(0, 3, n),
               x_test=rng.integers(0, 256, (n // 2, *SHAPE), dtype=np.uint8), y_test=rng.integers(0, 3, n // 2))
    return dataclasses.replace(a, **override)


@dataclasses.dataclass(frozen=True)
class Data:
    name: str
    make: object  # () -> Arrays
    input_shape: tuple = SHAPE
    num_classes: int = 3
    validation_fraction: float = 0.0

    def load(self, data_dir):
        return self.make()


def _net(name, dataset="good", units=3, input_shape=SHAPE):
    return ArchitectureSpec(name=name, dataset=dataset, input_shape=input_shape, layers=(
        LayerSpec(type="flatten", name="f"), LayerSpec(type="dense", name="out", units=units, activation="softmax")))


BASE = _arrays()
BAD = {
    "float255": (lambda: dataclasses.replace(BASE, x_train=BASE.x_train.astype(np.float32)),
                 ["x_train: float pixels must lie in [0, 1]", "[0, 255]", "give them as uint8"]),
    "int64-pixels": (lambda: dataclasses.replace(BASE, x_test=BASE.x_test.astype(np.int64)),
                     ["x_test: expected uint8 pixels (0-255) or floats in [0, 1], got dtype int64"]),
    "onehot": (lambda: dataclasses.replace(BASE, y_train=np.eye(3, dtype=np.int64)[BASE.y_train]),
               ["y_train: expected integer class indices of shape (20,), got shape (20, 3)", "one-hot"]),
    "label-3": (lambda: dataclasses.replace(BASE, y_test=np.full(10, 3)),
                ["y_test: expected class indices in [0, 2] (num_classes 3), got 3"]),
    "float-labels": (lambda: dataclasses.replace(BASE, y_train=BASE.y_train.astype(np.float32)),
                     ["y_train: expected integer class indices, got dtype float32"]),
    "hw-swapped": (lambda: dataclasses.replace(BASE, x_train=BASE.x_train.reshape(20, 1, 6, 6)),
                   ["x_train: expected images of shape (N, 6, 6, 1)", "got (20, 1, 6, 6)"]),
    "short-labels": (lambda: dataclasses.replace(BASE, y_test=BASE.y_test[:-1]), ["y_test: 9 labels for 10 images"]),
    "no-test": (lambda: dataclasses.replace(BASE, x_test=BASE.x_test[:0], y_test=BASE.y_test[:0]), ["the test set is empty"]),
    "dict": (lambda: {"x_train": BASE.x_train}, ["returned a dict, expected an effmodel.datasets.Arrays"]),
}


@pytest.fixture
def data_plugin(fresh_plugins):
    class Plugin:
        @hookimpl
        def register_datasets(self, register):
            register(Data("good", lambda: BASE))
            register(Data("unit-floats", lambda: dataclasses.replace(BASE, x_train=BASE.x_train / np.float32(255))))
            for name, (make, _) in BAD.items():
                register(Data(name, make))

    class Nets:
        @hookimpl
        def register_architectures(self, register):
            register(_net("TwelveNet", units=12))
            register(_net("WideNet", input_shape=(7, 6, 1)))
            register(_net("LostNet", dataset="fashion"))

    fresh_plugins.register_plugin(Plugin(), name="baddata")
    fresh_plugins.register_plugin(Nets(), name="nets")
    try:
        yield fresh_plugins
    finally:
        fresh_plugins.unregister_plugin("baddata")
        fresh_plugins.unregister_plugin("nets")


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_broken_dataset_is_one_line_naming_its_plugin(data_plugin, name):
    from effmodel.pipeline import dataset_arrays

    with pytest.raises(DataError) as info:
        dataset_arrays(name, None)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"plugin 'baddata' (dataset {name!r}) broke the dataset contract in load: "), msg
    for fragment in BAD[name][1]:
        assert fragment in msg, (fragment, msg)


def test_floats_in_the_documented_range_are_taken_as_they_are(data_plugin):
    from effmodel.pipeline import dataset_arrays

    _, arrays = dataset_arrays("unit-floats", None)
    i = np.unravel_index(np.argmax(BASE.x_train), BASE.x_train.shape)
    assert to_float(arrays.x_train)[i] == pytest.approx(BASE.x_train[i] / 255)  # not divided by 255 twice
    assert to_float(np.array([0, 51, 255], np.uint8)).tolist() == pytest.approx([0.0, 0.2, 1.0])


@pytest.mark.parametrize("net, fragments", [
    ("TwelveNet", ["plugin 'nets' (architecture 'TwelveNet') ends in a 12-unit classifier",
                   "plugin 'baddata' (dataset 'good') has 3 classes"]),
    ("WideNet", ["plugin 'nets' (architecture 'WideNet') expects inputs (7, 6, 1)",
                 "plugin 'baddata' (dataset 'good') has images (6, 6, 1)"]),
])
def test_an_architecture_that_does_not_fit_its_dataset_names_both(data_plugin, net, fragments):
    from effmodel.pipeline import dataset_arrays

    spec = data_plugin.get_architectures()[net]
    with pytest.raises(DataError) as info:
        dataset_arrays("good", None, spec=spec)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_an_unknown_dataset_names_the_architecture_that_asked(data_plugin):
    from effmodel.pipeline import dataset_arrays

    spec = data_plugin.get_architectures()["LostNet"]
    with pytest.raises(UsageError, match=r"plugin 'nets' \(architecture 'LostNet'\) asks for the dataset 'fashion', "
                                         r"which no plugin registers \(known: .*good"):
        dataset_arrays("fashion", None, spec=spec)


def test_the_real_datasets_keep_the_contract(fresh_plugins, data_dir):
    from effmodel.pipeline import dataset_arrays

    for name in ("mnist", "cifar10"):
        spec = next(s for s in fresh_plugins.get_architectures().values() if s.dataset == name)
        ds, arrays = dataset_arrays(name, data_dir, spec=spec)
        assert loaded_fingerprint(name) == dataset_fingerprint(ds, arrays)
    assert loaded_fingerprint("mnist") != loaded_fingerprint("cifar10")


def test_fingerprint_follows_content_or_declared_version():
    ds = Data("good", lambda: BASE)
    same = _arrays()  # equal content, another object
    changed = dataclasses.replace(BASE, y_test=(BASE.y_test + 1) % 3)  # regenerated labels
    fp = dataset_fingerprint(ds, BASE)
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 16
    assert dataset_fingerprint(ds, same) == fp
    assert dataset_fingerprint(ds, changed) != fp
    import hashlib

    h = hashlib.sha256()  # by hand: dtype, shape and bytes of the four arrays in order
    for field in ("x_train", "y_train", "x_test", "y_test"):
        a = getattr(BASE, field)
        h.update(f"{field}{a.dtype.str}{a.shape}".encode() + a.tobytes())
    assert fp == "sha256:" + h.hexdigest()[:16]

    class Versioned(Data):
        version = "2"

    assert dataset_fingerprint(Versioned("good", lambda: BASE), changed) == "version:2"
