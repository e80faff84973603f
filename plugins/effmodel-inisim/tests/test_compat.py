"""The snntoolbox compatibility shims: each fixes the symptom it documents."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from effmodel_inisim import compat


def test_apply_is_idempotent_and_names_every_shim():
    first = compat.apply()
    assert compat.apply() == first == compat.applied()
    assert {"legacy_keras", "scale_fac_float", "online_scalar_rate"} <= set(first)


def test_tensorflow_keras_is_keras_2():
    compat.apply()
    import tensorflow as tf

    import tf_keras

    assert tf.keras.layers.Dense is tf_keras.layers.Dense
    assert tf_keras.__version__.startswith("2."), tf_keras.__version__
    # snntoolbox's spiking layers derive from the same Keras 2 classes
    from snntoolbox.simulation.backends.inisim import temporal_mean_rate_tensorflow as backend

    assert issubclass(backend.SpikeDense, tf_keras.layers.Dense)


def test_np_product_and_bool():
    """In a fresh interpreter: NumPy 2 has no ``np.product`` until the shim
    adds it; ``np.bool`` (present again in NumPy 2) is removed by hand, as
    on NumPy 1.24-1.26, and the shim must put it back."""
    code = (
        "import numpy as np\n"
        "from effmodel.keras_compat import import_keras\n"
        "import_keras()\n"  # TensorFlow itself needs np.bool at import
        "assert not hasattr(np, 'product')\n"
        "del np.bool\n"
        "assert not hasattr(np, 'bool')\n"
        "from effmodel_inisim import compat\n"
        "applied = compat.apply()\n"
        "assert np.product([2, 3, 4]) == 24 and np.bool is np.bool_\n"
        "assert {'np_product', 'np_bool'} <= set(applied), applied\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_scale_factors_are_json_serialisable():
    compat.apply()
    from snntoolbox.conversion import utils as conv_utils

    value = conv_utils.get_scale_fac(np.array([0.5, 1.0, 2.0], np.float32), 50)
    assert type(value) is float and value == 1.0
    json.dumps({"layer": value})
    assert conv_utils.get_scale_fac(np.zeros(0, np.float32), 99) == 1.0


def test_online_rate_variable_is_scalar():
    """Without the shim, building a spiking layer with online normalisation
    leaves ``max_spikerate`` of shape (1,) and the first step crashes."""
    compat.apply()
    import configparser
    import os

    import snntoolbox
    import tensorflow as tf
    from snntoolbox.bin.utils import load_config
    from snntoolbox.simulation.backends.inisim import temporal_mean_rate_tensorflow as backend

    config = load_config(os.path.join(os.path.dirname(snntoolbox.__file__), "config_defaults"))
    assert isinstance(config, configparser.ConfigParser)
    config.set("normalization", "online_normalization", "True")
    config.set("output", "log_vars", "{'synaptic_operations_b_t'}")
    layer = backend.SpikeDense(units=3, config=config)
    layer.activation_str = "relu"
    out = layer(tf.ones((2, 4)))  # one step: would raise 'Shape mismatch' unshimmed
    assert layer.max_spikerate.shape.rank == 0 and layer.v_thresh.shape.rank == 0
    assert out.shape == (2, 3)


def test_plugin_import_is_light():
    code = "import sys, effmodel_inisim; assert 'tensorflow' not in sys.modules and 'snntoolbox' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
