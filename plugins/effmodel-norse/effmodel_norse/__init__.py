"""effmodel plugin: the ``norse`` simulator (PyTorch + Norse neurons).

Only registration lives here; torch and Norse are imported lazily inside
:meth:`NorseSimulator.open`, so that ``effmodel --help`` stays fast.
"""

from __future__ import annotations

from effmodel import hookimpl


def _simulator_module():
    """:mod:`effmodel_norse.simulator` (torch, Norse), imported after OpenMP
    is told to let idle workers sleep soon (``effmodel.threads.short_openmp_spin``:
    read once, when torch loads its OpenMP runtime)."""
    from effmodel.threads import short_openmp_spin

    short_openmp_spin()
    from . import simulator

    return simulator


class NorseSimulator:
    """Simulates a :class:`~effmodel.simulation.ConvertedNetwork` with Norse
    neurons; options are documented in :mod:`effmodel_norse.simulator`."""

    name = "norse"
    description = "Norse/PyTorch IF simulation of the converted network (exact SynOps, CPU or CUDA)"

    def open(self, network, config):
        return _simulator_module().NorseSession(network, config)

    def auto_batch_size(self, network, duration, num_images, options):
        """``--batch-size auto``: GPU memory budget on CUDA, the measured best on CPU."""
        return _simulator_module().auto_batch_size(network, duration, num_images, options)


@hookimpl
def register_simulators(register):
    register(NorseSimulator())
