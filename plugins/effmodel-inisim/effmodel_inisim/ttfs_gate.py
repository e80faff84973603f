"""snntoolbox's ttfs layers with the input gate decided per image.

A ttfs layer of snntoolbox 0.6.0 (``backends/inisim/ttfs.py``, decorator
``spike_call``) receives no current, not even its bias, while none of its
inputs has fired, "to prevent accumulation of bias".  It decides this once for
the *whole batch* (``tf.reduce_any`` over every image): as soon as one image
of the batch has an input spike, every other image's neurons integrate their
bias too, so an image's spike times depend on the images batched with it.

:func:`image_gated_backend` returns a copy of the ttfs backend module whose
integrating layers (dense, conv, depthwise conv, average pooling) decide the
gate per image, as effmodel's numpy reference does; everything else (the
neuron, reset to zero, refractoriness for the run, the persistent
post-synaptic current, max pooling) is snntoolbox's own code.  The copy is
handed to one SNN (``snn.sim``) before it is built; snntoolbox's module itself
is left untouched.
"""

from __future__ import annotations

import types

GATES = ("image", "batch")
"""``ttfs_gate`` option values: ``image`` (effmodel's rule, results independent of the batch) or ``batch`` (snntoolbox's)."""


def image_gated_backend() -> types.ModuleType:
    """A module like ``snntoolbox.simulation.backends.inisim.ttfs`` with per-image gated layers."""
    from snntoolbox.simulation.backends.inisim import ttfs
    from tensorflow.keras.layers import AveragePooling2D, Conv2D, Dense, DepthwiseConv2D

    module = types.ModuleType(f"{__name__}.backend", __doc__)
    module.__dict__.update({k: v for k, v in vars(ttfs).items() if not k.startswith("__")})
    replaced = {}
    for spike_class, keras_class in ((ttfs.SpikeDense, Dense), (ttfs.SpikeConv2D, Conv2D),
                                     (ttfs.SpikeDepthwiseConv2D, DepthwiseConv2D),
                                     (ttfs.SpikeAveragePooling2D, AveragePooling2D)):
        name = spike_class.__name__  # snntoolbox looks its layers up by this name ('Spike' + type)
        replaced[name] = type(name, (spike_class,), {"call": _image_gated_call(keras_class), "__module__": __name__,
                                                     "__doc__": f"{spike_class.__doc__} Input gate per image."})
    module.__dict__.update(replaced)
    module.custom_layers = {**ttfs.custom_layers, **replaced}
    return module


def _image_gated_call(keras_class):
    """``call`` of a ttfs layer: ``keras_class``'s current, zeroed for each image none of whose inputs is non-zero."""
    import tensorflow as tf

    @tf.function
    def call(self, x, *args, **kwargs):
        impulse = keras_class.call(self, x)
        active = tf.reduce_any(tf.not_equal(x, 0), axis=list(range(1, len(x.shape))))
        active = tf.reshape(active, [-1] + [1] * (len(impulse.shape) - 1))
        self.impulse = tf.where(active, impulse, tf.zeros_like(impulse))
        return self.update_neurons()

    return call
