"""effmodel plugin: the ``norse`` simulator (PyTorch + Norse neurons).

Only registration lives here; torch and Norse are imported lazily inside
:meth:`NorseSimulator.open`, so that ``effmodel --help`` stays fast.
"""

from __future__ import annotations

from effmodel import hookimpl


class NorseSimulator:
    """Simulates a :class:`~effmodel.simulation.ConvertedNetwork` with Norse
    neurons; options are documented in :mod:`effmodel_norse.simulator`."""

    name = "norse"
    description = "Norse/PyTorch IF simulation of the converted network (exact SynOps, CPU or CUDA)"

    def open(self, network, config):
        from .simulator import NorseSession

        return NorseSession(network, config)

    def auto_batch_size(self, network, duration, num_images, options):
        """``--batch-size auto``: GPU memory budget on CUDA, the measured best on CPU."""
        from .simulator import auto_batch_size

        return auto_batch_size(network, duration, num_images, options)


@hookimpl
def register_simulators(register):
    register(NorseSimulator())
