"""effmodel plugin: the ``norse`` simulator (PyTorch + Norse neurons).

Only registration lives here; torch and Norse are imported lazily inside
:meth:`NorseSimulator.open`, so that ``effmodel --help`` stays fast.
"""

from __future__ import annotations

from effmodel import hookimpl
from effmodel.options import SimulatorOption

OPTIONS = (
    SimulatorOption("mode", str, "auto", ("auto", "layerwise", "stepwise"),
                    "layerwise: a time chunk per conv/dense call; stepwise: one step at a time; auto: per device"),
    SimulatorOption("chunk_elements", int, 2**22, doc="layerwise: at most this many elements in the largest chunk tensor"),
    SimulatorOption("chunk_steps", int, None, doc="layerwise: a fixed chunk length in steps (default: from chunk_elements; 5 on CUDA)"),
    SimulatorOption("precision", str, "fp32", ("fp32", "tf32"), "CUDA: fp32 turns TF32 off so the GPU gives the CPU's spikes"),
    SimulatorOption("threads", (int, str), "auto", doc="CPU threads for torch: auto (the idle cores) or a number"),
    SimulatorOption("kernels", str, "auto", ("auto", "on", "off"), "CPU: numba IF/max-pool kernels with fused counting (rate coding)"),
    SimulatorOption("neuron", str, "if", ("if", "iaf", "lif", "adaptive"),
                    "the rate-coded neuron model (effmodel_norse.neurons): adaptive = Zambrano et al. 2019; ttfs has its own"),
    SimulatorOption("reset", str, "subtract", ("subtract", "zero"), "neuron if|adaptive: after a spike, subtract the threshold or reset to zero"),
    SimulatorOption("mf", float, 0.1, doc="neuron=adaptive: speed of adaptation m_f, also the resting threshold"),
    SimulatorOption("tau_mem_inv", float, 100.0, doc="LIF inverse membrane time constant (1/s), dt = 1 ms"),
    SimulatorOption("tau_syn_inv", float, None, doc="LIF inverse synaptic time constant (1/s); default: no synaptic current"),
    SimulatorOption("dtype", str, "float32", ("float32", "float64"), "membrane potential precision"),
    SimulatorOption("device", str, None, doc="torch device; default cuda when available, else cpu"),
    SimulatorOption("readout", str, None, ("spikes", "potential"), "deprecated alias of --readout; wins when given"),
)
"""What ``--option`` may set (checked by the core before training; see :mod:`effmodel_norse.simulator`)."""


def check_neuron_options(options, coding: str) -> None:
    """Refuse, in one line, neuron options that mean nothing together (as
    the numpy reference): under ``--coding ttfs`` the neurons fire once
    and reset to zero (``neuron=if`` and ``reset=zero`` describe them,
    anything else is refused); ``mf`` belongs to adaptive neurons; ``reset``
    to ``if`` and ``adaptive`` (Norse's ``iaf`` and ``lif`` reset to zero
    by their own rule).  Torch-free: the core calls it before training."""
    from effmodel.errors import UsageError

    opts = dict(options)
    neuron = str(opts.get("neuron", "if"))
    if coding == "ttfs":
        rate_only = [f"{k}={opts[k]}" for k in ("neuron", "reset", "mf")
                     if k in opts and (k, str(opts[k])) not in {("neuron", "if"), ("reset", "zero")}]
        if rate_only:
            raise UsageError(f"norse --coding ttfs neurons fire once and reset to zero: option {', '.join(rate_only)} "
                             "applies to rate coding")
        return
    if "mf" in opts and neuron != "adaptive":
        raise UsageError("norse option mf applies to neuron=adaptive")
    if "mf" in opts and not float(opts["mf"]) > 0:
        raise UsageError(f"norse option mf must be positive, got {opts['mf']!r}")
    if "reset" in opts and neuron not in ("if", "adaptive"):
        raise UsageError(f"norse option reset applies to neuron=if|adaptive; neuron={neuron} has its own")


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
    options = OPTIONS
    codings = ("rate", "ttfs")  # rate: IF with reset by subtraction; ttfs: time to first spike (effmodel_norse.neurons)
    description = "Norse/PyTorch simulation of the converted network, rate or ttfs code (exact SynOps, CPU or CUDA)"

    def check_config(self, config):
        """Option combinations that mean nothing together, refused before any training (torch-free)."""
        check_neuron_options(config.options, config.coding)

    def open(self, network, config):
        return _simulator_module().NorseSession(network, config)

    def auto_batch_size(self, network, duration, num_images, options):
        """``--batch-size auto``: GPU memory budget on CUDA, the measured best on CPU."""
        return _simulator_module().auto_batch_size(network, duration, num_images, options)


@hookimpl
def register_simulators(register):
    register(NorseSimulator())
