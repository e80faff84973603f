"""Build the :class:`ConvertedNetwork` that every simulator receives.

This is the one place where a trained ANN becomes a convertible network:
trained weights are read from the Keras file, the normalisation images are
the first ``num_images`` training images (reproducible), and the
normalisation is computed once here, so that all simulators run the same
converted network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import Arrays, to_float
from .errors import DataError, UsageError
from .normalisation import normalise
from .simulation import ConvertedNetwork, LayerWeights, NormalisationSettings
from .specs import ArchitectureSpec


def normalisation_images(arrays: Arrays, num_images: int) -> np.ndarray:
    """The first ``num_images`` training images as float32 in [0, 1]."""
    if num_images <= 0:
        raise UsageError(f"the number of normalisation images must be positive, got {num_images}")
    return to_float(arrays.x_train[:num_images])


def convert(
    spec: ArchitectureSpec,
    weights: dict[str, LayerWeights],
    arrays: Arrays,
    settings: NormalisationSettings,
    model_path: Path | None = None,
) -> ConvertedNetwork:
    """Normalise ``weights`` on the dataset's first training images.

    :raises DataError: broken weights (see :func:`check_weights`), before anything is simulated.
    """
    source = Path(model_path).name if model_path is not None else spec.name
    check_weights(spec, weights, source)
    images = normalisation_images(arrays, settings.num_images)
    normalised, scales = normalise(spec, weights, images, settings)
    check_weights(spec, normalised, f"{source} after normalisation")
    return ConvertedNetwork(
        spec=spec,
        weights=weights,
        normalised_weights=normalised,
        scale_factors=scales,
        normalisation=settings,
        model_path=model_path,
        norm_images=images,
    )


def check_weights(spec: ArchitectureSpec, weights: dict[str, LayerWeights], source: str) -> None:
    """Refuse weights no SNN can be built from, in one line naming the layer.

    NaN or infinite values anywhere (a diverged training, a corrupt file), or
    a conv/dense layer whose kernel is all zero: its outputs, and so the
    classification, would not depend on the input (an all-zero output layer
    gives every image the same class and zero SynOps there).
    """
    for layer in spec.weight_layers:
        w = weights.get(layer.name)
        if w is None:
            raise DataError(f"{source}: no weights for layer {layer.name!r}")
        for part, arr in (("kernel", w.kernel), ("bias", w.bias)):
            if arr is None:
                continue
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            if bad:
                raise DataError(f"{source}: layer {layer.name!r} {part} has {bad} NaN/infinite values of {np.size(arr)} "
                                "(diverged training or a corrupt file); nothing was simulated")
        if not np.any(w.kernel):
            where = "the output layer" if layer is spec.weight_layers[-1] else "layer"
            raise DataError(f"{source}: {where} {layer.name!r} has an all-zero kernel, so the network's output does not "
                            "depend on its input; nothing was simulated")


def convert_trained(spec: ArchitectureSpec, model_path: Path, arrays: Arrays, settings: NormalisationSettings) -> ConvertedNetwork:
    """Load the trained Keras file and convert it."""
    from .training import extract_weights, load_model

    model = load_model(model_path)
    return convert(spec, extract_weights(model, spec), arrays, settings, model_path=Path(model_path))
