"""Real MNIST and CIFAR-10 from the data folder, the report's splits, and
one-line ``DataError`` for a bad data folder."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from effmodel.datasets import iter_batches, resolve_data_dir, split_train_validation, to_float
from effmodel.errors import DataError

# per-class counts from /work/shared/data/README.md
MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_BATCH_1 = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]


@pytest.fixture(scope="module")
def datasets():
    from effmodel import plugins

    return plugins.get_datasets()


def test_mnist_loads(datasets, data_dir):
    mnist = datasets["mnist"]
    a = mnist.load(data_dir)
    assert mnist.input_shape == (28, 28, 1) and mnist.num_classes == 10
    assert a.x_train.shape == (60000, 28, 28, 1) and a.x_test.shape == (10000, 28, 28, 1)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int64
    assert np.bincount(a.y_train, minlength=10).tolist() == MNIST_TRAIN
    assert np.bincount(a.y_test, minlength=10).tolist() == MNIST_TEST
    assert a.x_train.max() == 255 and a.x_train.min() == 0
    x = to_float(a.x_test[:100])
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # to_float is exactly /255
    assert x[0, 14, 14, 0] == np.float32(a.x_test[0, 14, 14, 0]) / np.float32(255)


def test_mnist_split_85_15(datasets, data_dir):
    mnist = datasets["mnist"]
    a = mnist.load(data_dir)
    assert mnist.validation_fraction == 0.15
    xtr, ytr, xva, yva = split_train_validation(a.x_train, a.y_train, mnist.validation_fraction)
    assert (len(xtr), len(xva)) == (51000, 9000)
    # Keras' validation_split holds out the *last* part, unshuffled
    assert np.array_equal(xva, a.x_train[51000:]) and np.array_equal(ytr, a.y_train[:51000])


def test_cifar10_loads(datasets, data_dir):
    cifar = datasets["cifar10"]
    a = cifar.load(data_dir)
    assert cifar.input_shape == (32, 32, 3) and cifar.num_classes == 10
    assert a.x_train.shape == (50000, 32, 32, 3) and a.x_test.shape == (10000, 32, 32, 3)
    assert a.x_train.dtype == np.uint8 and a.y_test.dtype == np.int64
    assert np.bincount(a.y_train, minlength=10).tolist() == [5000] * 10
    assert np.bincount(a.y_test, minlength=10).tolist() == [1000] * 10
    assert np.bincount(a.y_train[:10000], minlength=10).tolist() == CIFAR_BATCH_1
    # channel means from the README (NHWC, RGB order): train (0.4914, 0.4822, 0.4465)
    means = [float(a.x_train[:, :, :, ch].mean()) / 255 for ch in range(3)]
    assert means == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-4)
    x = to_float(a.x_test[:50])
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0


def test_cifar10_split_83_17(datasets, data_dir):
    cifar = datasets["cifar10"]
    a = cifar.load(data_dir)
    assert cifar.validation_fraction == 0.17
    xtr, _, xva, yva = split_train_validation(a.x_train, a.y_train, cifar.validation_fraction)
    assert (len(xtr), len(xva)) == (41500, 8500)
    assert np.array_equal(yva, a.y_train[41500:])


def test_iter_batches_bounded_and_limited():
    x = np.full((10, 2, 2, 1), 255, np.uint8)
    y = np.arange(10)
    batches = list(iter_batches(x, y, batch_size=4, limit=9))
    assert [len(b[0]) for b in batches] == [4, 4, 1]
    assert all(b[0].dtype == np.float32 and b[0].max() == 1.0 for b in batches)
    assert np.concatenate([b[1] for b in batches]).tolist() == list(range(9))


# --- bad data folders -------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_nonexistent_data_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as info:
        resolve_data_dir(missing)
    _one_line(info, str(missing), "EFFMODEL_DATA_DIR")


def test_data_dir_env_and_option(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFMODEL_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(other) == other  # --data-dir beats the variable
    monkeypatch.delenv("EFFMODEL_DATA_DIR")
    assert resolve_data_dir(None) is None  # download


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_empty_data_dir(datasets, tmp_path, name):
    with pytest.raises(DataError) as info:
        datasets[name].load(tmp_path)
    _one_line(info, str(tmp_path), "--data-dir")


@pytest.fixture
def mnist_copy(data_dir, tmp_path):
    d = tmp_path / "mnist"
    shutil.copytree(data_dir / "mnist", d)
    return d


def test_truncated_mnist_file(datasets, mnist_copy):
    f = mnist_copy / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[: 100_000])
    with pytest.raises(DataError) as info:
        datasets["mnist"].load(mnist_copy.parent)
    _one_line(info, str(f))


def test_mnist_file_with_wrong_checksum(datasets, mnist_copy):
    # a perfectly valid gzip whose content differs from LeCun's by one label
    f = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(f.read_bytes()))
    raw[-1] = (raw[-1] + 1) % 10
    f.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as info:
        datasets["mnist"].load(mnist_copy.parent)
    _one_line(info, str(f), "checksum")


def test_missing_mnist_file(datasets, mnist_copy):
    (mnist_copy / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        datasets["mnist"].load(mnist_copy.parent)
    _one_line(info, "train-labels-idx1-ubyte.gz", "missing")


def test_truncated_cifar_file(datasets, data_dir, tmp_path):
    d = tmp_path / "cifar10"
    d.mkdir()
    for f in (data_dir / "cifar10").iterdir():
        (d / f.name).symlink_to(f)  # cheap: only the damaged file is a real copy
    bad = d / "test_batch"
    bad.unlink()
    bad.write_bytes((data_dir / "cifar10" / "test_batch").read_bytes()[:1_000_000])
    with pytest.raises(DataError) as info:
        datasets["cifar10"].load(tmp_path)
    _one_line(info, str(bad), "checksum")


def test_cli_bad_data_dir_is_one_line(run_effmodel):
    """Needs the lead's ``effmodel train`` command (interface: --model, --data-dir)."""
    r = run_effmodel("train", "--model", "SmallCNN1", "--data-dir", "/nonexistent")
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "/nonexistent" in lines[0]
