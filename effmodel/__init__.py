"""effmodel: when is a converted spiking network cheaper than the ANN it came from?

The names in ``__all__`` are effmodel's **stable public API** for plugin
authors (listed with their meaning in ``docs/hooks.md``, "The stable API").
They keep their meaning within a major :data:`HOOK_API_VERSION`; anything
imported from a submodule and not listed here may change.  Every name but
:data:`hookimpl` is imported on first use (PEP 562), so ``import effmodel``
stays cheap and never imports TensorFlow or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

import pluggy

__version__ = "0.1.0"

HOOK_API_VERSION = (1, 0)
"""(major, minor) of the plugin contract: the four hooks, the public names
below and the simulator contract of ``docs/hooks.md``.  The major number
changes when a plugin written for the old one could break; a plugin can
check ``effmodel.HOOK_API_VERSION[0] == 1``."""

hookimpl = pluggy.HookimplMarker("effmodel")

# public name -> submodule that defines it (imported lazily)
_LAZY = {
    # architectures and datasets
    "ArchitectureSpec": "specs",
    "LayerSpec": "specs",
    "load_spec_file": "specs",
    "load_spec_dir": "specs",
    "validate_spec": ("specs", "validate"),
    "same_padding": "specs",
    "Arrays": "datasets",
    "Dataset": "datasets",
    # simulators
    "ConvertedNetwork": "simulation",
    "LayerWeights": "simulation",
    "NormalisationSettings": "simulation",
    "SimulationConfig": "simulation",
    "BatchResult": "simulation",
    "SimulationResult": "simulation",
    "Simulator": "simulation",
    "SimulationSession": "simulation",
    "READOUTS": "simulation",
    "simulate": "simulation",
    # exact counting
    "count_network": "counting",
    "fanout_map": "counting",
    "spiking_layer_indices": "counting",
    "synops_of_spikes": "counting",
    # numpy layer operations with Keras semantics (for numpy simulators)
    "conv2d": ("forward", "conv2d"),
    "pool2d": ("forward", "pool2d"),
    # cost models
    "CostModel": "costs",
    "load_cost_models": "costs",
    # errors (the CLI prints them as one line)
    "EffmodelError": "errors",
    "UsageError": "errors",
    "DataError": "errors",
    "SimulationError": "errors",
    "PluginError": "errors",
    # analysis of stored results (notebooks; docs/analysis.md)
    "load_results": ("analysis.frame", "load_results"),
    "reprice": ("analysis.robustness", "reprice"),
    "verdict": ("analysis.verdict", "verdict"),
    # in-process plugins (notebooks, tests; see also effmodel.testing)
    "register_plugin": "plugins",
    "unregister_plugin": "plugins",
}

__all__ = ["hookimpl", "__version__", "HOOK_API_VERSION", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'effmodel' has no attribute {name!r}")
    module, attr = (target, name) if isinstance(target, str) else target
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
