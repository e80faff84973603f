"""Import the Keras 2 API (``tf_keras``) that snntoolbox reads, lazily.

TensorFlow 2.16+ ships Keras 3, which snntoolbox 0.6.0 cannot parse; with
``TF_USE_LEGACY_KERAS=1`` set *before* TensorFlow is first imported,
``tf.keras`` is ``tf_keras`` (Keras 2.x).  Everything that trains, saves or
loads Keras models goes through :func:`import_keras` so that training and
simulation use the same Keras.
"""

from __future__ import annotations

import os
import sys


def import_keras():
    """Return the ``tf_keras`` module, configuring TensorFlow on first use."""
    if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        # TF already imported without the flag: tf_keras still works directly.
        pass
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover - depends on the install
        from .errors import UsageError

        raise UsageError(f"tf_keras is not installed ({exc}); run `make setup` or pip install 'effmodel[train]'") from None
    return tf_keras


def versions() -> dict[str, str]:
    """Library versions that affect a trained model (part of the cache key)."""
    import numpy
    import tensorflow as tf

    keras = import_keras()
    return {"tensorflow": tf.__version__, "tf_keras": keras.__version__, "numpy": numpy.__version__}
