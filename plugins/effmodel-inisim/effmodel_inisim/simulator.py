"""The ``inisim`` simulator object that the plugin registers.

Light on purpose: TensorFlow and snntoolbox are imported only when a
simulation is opened (:mod:`effmodel_inisim.session`).

Options (``SimulationConfig.options``):

``normalisation`` (``"effmodel"``)
    ``"effmodel"``: simulate exactly the network effmodel's core normalised
    (``network.normalised_weights`` on ``network.simulated_spec``), with
    snntoolbox's own normalisation off, so that every simulator runs the same
    weights.  ``"snntoolbox"``: give snntoolbox the trained model and
    ``network.norm_images`` and let it normalise (percentile
    ``network.normalisation.percentile``, ``max2avg_pool`` from the network).
    ``"online"``: as ``"snntoolbox"`` plus snntoolbox's online normalisation
    (the report's published configuration).
``softmax_to_relu`` (``True``)
    Simulate the output layer as IF/ReLU neurons (deterministic).  With
    ``False`` it stays snntoolbox's spiking softmax, which draws random numbers
    at every step (early-time accuracy then depends on the seed).
``ttfs_gate`` (``"image"``)
    ``--coding ttfs`` only: a layer receives no current (not even its bias)
    while none of its inputs has fired.  ``"image"``: decided per image, as
    the numpy reference does (results do not depend on the batch).
    ``"batch"``: snntoolbox's own rule, decided for the whole batch at once.
``log_file`` (``True``)
    Send snntoolbox's console output to ``<workdir>/snntoolbox.log`` instead
    of stdout.
``keep_workdir`` (``False``)
    Keep a temporary working directory after ``close`` (a ``workdir`` given
    in the config is always kept).
"""

from __future__ import annotations

from effmodel.options import CORE_OPTIONS, SimulatorOption

from .toolbox_config import SPIKE_CODES
from .ttfs_gate import GATES

NORMALISATION_MODES = ("effmodel", "snntoolbox", "online")
OPTIONS = (
    SimulatorOption("normalisation", str, "effmodel", NORMALISATION_MODES,
                    "effmodel: the core's normalised weights; snntoolbox/online: snntoolbox normalises"),
    SimulatorOption("softmax_to_relu", bool, True, doc="simulate the output layer as IF/ReLU neurons (deterministic)"),
    SimulatorOption("ttfs_gate", str, "image", GATES,
                    "ttfs: a layer's input gate (no current before an input spike) per image, or per batch as snntoolbox"),
    SimulatorOption("log_file", bool, True, doc="send snntoolbox's console output to <workdir>/snntoolbox.log"),
    *CORE_OPTIONS,
)


class InisimSimulator:
    """snntoolbox 0.6.0's INI simulator (temporal mean rate or time to first spike) as an effmodel simulator."""

    name = "inisim"
    options = OPTIONS  # checked by the core before training (effmodel.options)
    readouts = ("spikes",)  # snntoolbox's rule only; the core refuses --readout potential up front
    codings = tuple(SPIKE_CODES)  # rate -> its temporal_mean_rate backend, ttfs -> its ttfs backend
    description = ("snntoolbox 0.6.0 INI simulator (temporal mean rate or ttfs, tf_keras); "
                   "exact and snntoolbox SynOps per step")

    def open(self, network, config):
        """Parse and convert ``network`` once; return a session that simulates batches."""
        from .session import InisimSession

        return InisimSession(network, config)
