"""The entry point: :func:`load_model_file` reads a user's Keras file into an :class:`ImportedModel`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import DataError, UsageError
from ..simulation import LayerWeights
from ..specs import ArchitectureSpec, validate
from .readers import read_h5, read_keras_zip
from .translate import check_weights, translate
from .untrusted import H5_SUFFIXES, KERAS_SUFFIXES
from .writer import write_h5

DATASET_BY_SHAPE = {(28, 28, 1): "mnist", (32, 32, 3): "cifar10"}


@dataclass(frozen=True)
class ImportedModel:
    """A model file read into effmodel's terms.

    ``spec``: the architecture (``source`` is the file).  ``weights``: per
    conv/dense layer name, Keras ``channels_last`` layout.  ``model_path``: a
    ``channels_last`` ``.h5`` whose layer names equal the spec's (the input
    file itself when it already is one).  ``keras_version``/``backend``: as
    recorded in the file ("" when absent).  ``reader``: "tf_keras" or "h5py".
    ``notes``: what was changed on the way (folded activations, layout).
    """

    spec: ArchitectureSpec
    weights: Mapping[str, LayerWeights] = field(repr=False)
    model_path: Path
    keras_version: str = ""
    backend: str = ""
    reader: str = ""
    notes: tuple[str, ...] = ()


def load_model_file(
    path: str | Path,
    dataset: str | None = None,
    name: str | None = None,
    workdir: str | Path | None = None,
    *,
    reader: str = "auto",
) -> ImportedModel:
    """Read a trained Keras 2 model file (``.h5``/``.hdf5``/``.keras``).

    ``dataset``/``name`` default to the one inferred from the input shape and
    the file stem.  A converted ``.h5`` (needed for ``channels_first`` models,
    ``.keras`` files, folded activations, ...) is written under ``workdir``
    (a fresh temporary folder if not given).  ``reader`` is "auto" (tf_keras,
    then h5py for ``.h5``), "tf_keras" or "h5py".

    :raises UsageError: missing file, unknown extension, unknown dataset shape.
    :raises DataError: corrupt/truncated file, unsupported layer or option.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"model file not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in H5_SUFFIXES + KERAS_SUFFIXES:
        raise UsageError(f"model file must be Keras .h5/.hdf5 or .keras, got {p.name!r}")
    if reader not in ("auto", "tf_keras", "h5py"):
        raise UsageError(f"reader must be 'auto', 'tf_keras' or 'h5py', got {reader!r}")
    if suffix in KERAS_SUFFIXES:
        if reader == "h5py":
            raise UsageError(".keras files are read with tf_keras only")
        raw = read_keras_zip(p)
    else:
        raw = read_h5(p, reader)

    layers, weights, input_shape, notes, identical = translate(raw, p)
    if raw.fallback_reason:
        notes.insert(0, f"read with h5py: tf_keras could not load it ({raw.fallback_reason})")
    if dataset is None:
        dataset = DATASET_BY_SHAPE.get(input_shape)
        if dataset is None:
            raise UsageError(
                f"{p.name}: cannot infer the dataset from input shape {input_shape} "
                f"(known: {', '.join(f'{v} {k}' for k, v in DATASET_BY_SHAPE.items())}); pass the dataset"
            )
    spec = ArchitectureSpec(
        name=name or p.stem, dataset=dataset, input_shape=input_shape, layers=tuple(layers),
        description=f"imported from {p.name}", source=str(p),
    )
    try:
        validate(spec)
    except UsageError as exc:
        raise DataError(f"{p.name}: {exc}") from None
    check_weights(spec, weights, p)

    reusable = identical and raw.reader == "tf_keras" and suffix in H5_SUFFIXES
    if reusable:
        model_path = p
    else:
        model_path = write_h5(spec, weights, p, workdir)
        notes.append(f"wrote a channels_last .h5 with effmodel layer names: {model_path}")
    return ImportedModel(
        spec=spec, weights=weights, model_path=model_path, keras_version=raw.keras_version,
        backend=raw.backend, reader=raw.reader, notes=tuple(notes),
    )
