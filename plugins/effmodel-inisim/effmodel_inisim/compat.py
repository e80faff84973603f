"""Make snntoolbox 0.6.0 run on TensorFlow 2.21 + tf_keras 2.21 + numpy 2.

snntoolbox 0.6.0 was written for TF 2.x with built-in Keras 2 and numpy 1.x.
:func:`apply` installs every shim it needs, once (idempotent), and returns
the names of those it installed.  Each shim fixes one observed symptom:

``legacy_keras``
    TF >= 2.16 ships Keras 3, which snntoolbox cannot parse (its layers lack
    ``_inbound_nodes`` / ``output_shape``).  ``TF_USE_LEGACY_KERAS=1`` must be
    set before TensorFlow is first imported so that ``tensorflow.keras`` is
    ``tf_keras`` (done through :func:`effmodel.keras_compat.import_keras`).
``np_product``
    ``AttributeError: module 'numpy' has no attribute 'product'`` in
    ``AbstractSNN.set_connectivity`` (removed in numpy 2): alias to ``np.prod``.
``np_bool``
    ``np.bool`` in ``AbstractSNN.init_log_vars`` (numpy 1.24-1.26 removed it;
    numpy 2 has it again): alias to ``np.bool_`` where missing.
``scale_fac_float``
    ``TypeError: Object of type float32 is not JSON serializable`` when
    ``normalize_parameters`` writes its scale factors:
    ``conversion.utils.get_scale_fac`` returns ``np.float32``; wrap it to
    return a Python ``float``.
``online_scalar_rate``
    ``Cannot assign value to variable ' v_thresh:0': Shape mismatch`` (and
    then the same for ``max_spikerate``) with ``online_normalization = True``:
    ``SpikeLayer.init_neurons`` creates ``max_spikerate`` with shape (1,)
    while ``v_thresh`` and every value assigned to ``max_spikerate`` are
    scalars.  Wrap ``init_neurons`` to recreate ``max_spikerate`` as a scalar.
"""

from __future__ import annotations

import os

_applied: list[str] = []


def apply() -> list[str]:
    """Install all shims (once) and return the names of those installed."""
    if _applied:
        return list(_applied)
    from effmodel.keras_compat import import_keras

    if "tensorflow" not in __import__("sys").modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import_keras()
    _applied.append("legacy_keras")

    import numpy as np

    if not hasattr(np, "product"):
        np.product = np.prod  # type: ignore[attr-defined]
        _applied.append("np_product")
    if not hasattr(np, "bool"):  # pragma: no cover - numpy 1.24-1.26 only
        np.bool = np.bool_  # type: ignore[attr-defined]
        _applied.append("np_bool")

    from snntoolbox.conversion import utils as conv_utils

    if not getattr(conv_utils.get_scale_fac, "_effmodel_shim", False):
        original = conv_utils.get_scale_fac

        def get_scale_fac(activations, percentile):
            return float(original(activations, percentile))

        get_scale_fac._effmodel_shim = True  # type: ignore[attr-defined]
        conv_utils.get_scale_fac = get_scale_fac
        _applied.append("scale_fac_float")

    from snntoolbox.simulation.backends.inisim import temporal_mean_rate_tensorflow as backend

    if not getattr(backend.SpikeLayer.init_neurons, "_effmodel_shim", False):
        import tensorflow as tf

        original_init = backend.SpikeLayer.init_neurons  # a tf.function

        def init_neurons(self, input_shape):
            # bind per instance, as attribute access would: one traced function per layer
            original_init.__get__(self, type(self))(input_shape)
            rate = getattr(self, "max_spikerate", None)
            if rate is not None and rate.shape.rank != 0:
                self.max_spikerate = tf.Variable(0.0, trainable=False, name="max_spikerate")

        init_neurons._effmodel_shim = True  # type: ignore[attr-defined]
        backend.SpikeLayer.init_neurons = init_neurons
        _applied.append("online_scalar_rate")
    return list(_applied)


def applied() -> list[str]:
    """Names of the shims installed so far (empty before :func:`apply`)."""
    return list(_applied)
