"""Moved to :mod:`effmodel.keras_import` (one module per concern; the
untrusted-file check is :mod:`effmodel.keras_import.untrusted`).  This name
stays so that existing imports (``from effmodel.model_import import
load_model_file, check_model_file``) keep working."""

from .keras_import import (  # noqa: F401 - re-exported
    DATASET_BY_SHAPE, H5_SUFFIXES, KERAS_MODULES, KERAS_SUFFIXES, KNOWN_LAYERS, SUPPORTED, ImportedModel, check_config,
    check_model_file, load_model_file,
)
