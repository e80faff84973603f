"""Importing Norse leaves TensorFlow alone and working in the same process.

Regression: hiding TensorFlow during ``import norse.torch`` made tensorboard
resolve its lazy ``tf`` to a stub, so any Keras training with the
TensorBoard callback later in that process (a cold training cache in a test
session) failed with "cannot import tensorflow 2.0 API".
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys, tempfile
    import numpy as np
    from effmodel_norse.network import import_norse
    import_norse()
    assert "tensorflow" not in sys.modules, "importing Norse loaded TensorFlow"
    from effmodel.keras_compat import import_keras
    keras = import_keras()
    m = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(2)])
    m.compile("adam", "mse")
    m.fit(np.zeros((8, 4)), np.zeros((8, 2)), epochs=1, verbose=0,
          callbacks=[keras.callbacks.TensorBoard(tempfile.mkdtemp())])
    print("trained")
""")


def test_keras_tensorboard_training_works_after_importing_norse():
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "trained" in r.stdout, r.stderr[-2000:]
