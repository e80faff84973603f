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
from .errors import UsageError
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
    """Normalise ``weights`` on the dataset's first training images."""
    images = normalisation_images(arrays, settings.num_images)
    normalised, scales = normalise(spec, weights, images, settings)
    return ConvertedNetwork(
        spec=spec,
        weights=weights,
        normalised_weights=normalised,
        scale_factors=scales,
        normalisation=settings,
        model_path=model_path,
        norm_images=images,
    )


def convert_trained(spec: ArchitectureSpec, model_path: Path, arrays: Arrays, settings: NormalisationSettings) -> ConvertedNetwork:
    """Load the trained Keras file and convert it."""
    from .training import extract_weights, load_model

    model = load_model(model_path)
    return convert(spec, extract_weights(model, spec), arrays, settings, model_path=Path(model_path))
