"""Bring your own trained model: read a Keras 2 ``.h5``/``.keras`` file into a spec.

:func:`load_model_file` turns a feed-forward Keras model trained outside
effmodel into an :class:`ImportedModel`: an :class:`~effmodel.specs.ArchitectureSpec`,
the trained weights in Keras' ``channels_last`` layout, and a ``channels_last``
``.h5`` that tf_keras loads and snntoolbox parses.

One concern per module, in the order a file goes through them:

- :mod:`.untrusted`: the safety check that runs **before any
  deserialisation** (JSON only; what a security review reads);
- :mod:`.readers`: tf_keras, or h5py for old ``.h5`` files tf_keras cannot load;
- :mod:`.translate`: the layer chain and its translation (``channels_first``,
  legacy ``Flatten`` order, Theano kernels, folded activations);
- :mod:`.writer`: the converted ``.h5``;
- :mod:`.load`: :func:`load_model_file`, tying them together.

Supported layers: InputLayer (skipped), Conv2D, Dense, MaxPooling2D,
AveragePooling2D, Dropout/SpatialDropout2D, Flatten, and Activation/ReLU/
Softmax layers that fold into the conv/dense layer before them (or that are
no-ops).  Anything else is a one-line :class:`~effmodel.errors.DataError`
naming the layer.
"""

from .load import DATASET_BY_SHAPE, ImportedModel, load_model_file
from .untrusted import H5_SUFFIXES, KERAS_MODULES, KERAS_SUFFIXES, KNOWN_LAYERS, SUPPORTED, check_config, check_model_file

__all__ = ["DATASET_BY_SHAPE", "H5_SUFFIXES", "KERAS_MODULES", "KERAS_SUFFIXES", "KNOWN_LAYERS", "SUPPORTED",
           "ImportedModel", "check_config", "check_model_file", "load_model_file"]
