"""MNIST (IDX ``.gz``) and CIFAR-10 (``cifar-10-batches-py`` pickles) loaders.

Files are verified before use: MNIST by the MD5 of the *uncompressed* IDX
files (the published LeCun checksums, so any faithful ``.gz`` passes),
CIFAR-10 by the official pickle MD5s or the SHA-256s of the byte-exact
re-encoded copies in the team's shared data folder.  Without a data
directory the standard Keras download is used (needs internet).
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effmodel.datasets import Arrays
from effmodel.errors import DataError

_HINT = "pass --data-dir or set EFFMODEL_DATA_DIR to a folder with mnist/ and cifar10/ (see README)"

MNIST_FILES = {
    # file: md5 of the uncompressed IDX file (LeCun's published values)
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}

CIFAR10_FILES = {
    # file: (official cifar-10-python md5, sha256 of the re-encoded shared copy)
    "data_batch_1": ("c99cafc152244af753f735de768cd75f", "91bd20338746a179d86f71201e502a673cba6dc0d93276f6d9283981907c9576"),
    "data_batch_2": ("d4bba439e000b95fd0a9bffe97cbabec", "13aecbb83612899e9807b09bc549cc6feaea816798c76f572ed01dee9497cdc4"),
    "data_batch_3": ("54ebc095f3ab1f0389bbae665268c751", "b135767732f4b0b8f14f2fac23144d928f9e8e780c7a9f61892ad7c4aff7429d"),
    "data_batch_4": ("634d18415352ddfa80567beed471001a", "1f2614fc89301fc27dc251cf18e581fb9377dcc066bb04322ce3c058f9501182"),
    "data_batch_5": ("482c414d41f54cd18b22e5b47cb7c3cb", "8a961f4532dbcca80aa18255bd4cf5e8e4187348060a04fbdfb8b4b2b7eb6255"),
    "test_batch": ("40351d587109b95175f43aff81a1287e", "54ada70b02b62fa5d840176d66a943f75ef10ec437634dfd25f1003d1507aeb3"),
}

_cache: dict[tuple[str, str], Arrays] = {}


def _find_dir(data_dir: Path, names: tuple[str, ...], marker: str) -> Path:
    for name in names + ("",):
        d = data_dir / name if name else data_dir
        if (d / marker).is_file():
            return d
    looked = ", ".join(str(data_dir / n) for n in names)
    raise DataError(f"{marker} not found in {looked} or {data_dir}; {_HINT}")


def parse_idx(raw: bytes, source: str) -> np.ndarray:
    """Decode an uncompressed IDX file (magic, big-endian dims, uint8 data)."""
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{source} is not an unsigned-byte IDX file; {_HINT}")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise DataError(f"{source} is truncated: header says {dims}; {_HINT}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


@dataclass(frozen=True)
class MNIST:
    name: str = "mnist"
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    validation_fraction: float = 0.15

    def load(self, data_dir: Path | None) -> Arrays:
        if data_dir is None:
            return _keras_download("mnist")
        d = _find_dir(Path(data_dir), ("mnist", "MNIST/raw", "MNIST"), "t10k-labels-idx1-ubyte.gz")
        key = (self.name, str(d.resolve()))
        if key not in _cache:
            arrays = []
            for fname, md5 in MNIST_FILES.items():
                path = d / fname
                try:
                    raw = gzip.decompress(path.read_bytes())
                except FileNotFoundError:
                    raise DataError(f"{path} is missing; {_HINT}") from None
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    raise DataError(f"{path} is corrupt ({exc}); {_HINT}") from None
                if hashlib.md5(raw).hexdigest() != md5:
                    raise DataError(f"{path} fails its checksum (expected the published MNIST MD5); {_HINT}")
                arrays.append(parse_idx(raw, str(path)))
            xtr, ytr, xte, yte = arrays
            _cache[key] = Arrays(xtr[..., None], ytr.astype(np.int64), xte[..., None], yte.astype(np.int64))
        return _cache[key]


@dataclass(frozen=True)
class CIFAR10:
    name: str = "cifar10"
    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    validation_fraction: float = 0.17

    def load(self, data_dir: Path | None) -> Arrays:
        if data_dir is None:
            return _keras_download("cifar10")
        d = _find_dir(Path(data_dir), ("cifar10", "cifar-10-batches-py"), "test_batch")
        key = (self.name, str(d.resolve()))
        if key not in _cache:
            parts = {}
            for fname, (md5, sha) in CIFAR10_FILES.items():
                path = d / fname
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    raise DataError(f"{path} is missing; {_HINT}") from None
                if hashlib.md5(raw).hexdigest() != md5 and hashlib.sha256(raw).hexdigest() != sha:
                    raise DataError(f"{path} fails its checksum (neither the official nor the shared copy); {_HINT}")
                try:
                    batch = pickle.loads(raw, encoding="bytes")
                    x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                    y = np.asarray(batch[b"labels"], dtype=np.int64)
                except Exception as exc:  # pickle or layout error
                    raise DataError(f"{path} cannot be read as a CIFAR-10 batch ({exc}); {_HINT}") from None
                parts[fname] = (np.ascontiguousarray(x), y)
            train = [parts[f"data_batch_{i}"] for i in range(1, 6)]
            _cache[key] = Arrays(
                np.concatenate([p[0] for p in train]),
                np.concatenate([p[1] for p in train]),
                parts["test_batch"][0],
                parts["test_batch"][1],
            )
        return _cache[key]


def _keras_download(name: str) -> Arrays:
    """The standard Keras download, for users with internet access."""
    from effmodel.keras_compat import import_keras

    keras = import_keras()
    try:
        (xtr, ytr), (xte, yte) = getattr(keras.datasets, name).load_data()
    except Exception as exc:
        raise DataError(f"no data directory given and the {name} download failed ({type(exc).__name__}); {_HINT}") from None
    if xtr.ndim == 3:
        xtr, xte = xtr[..., None], xte[..., None]
    return Arrays(xtr, ytr.reshape(-1).astype(np.int64), xte, yte.reshape(-1).astype(np.int64))
