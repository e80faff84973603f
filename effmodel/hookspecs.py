"""Hook specifications: the only contract between effmodel's core and its plugins.

Every hook is a *registration* hook: it receives a ``register`` callback and
calls it once per object it contributes.  Registration runs once, when the
registries are first read (see :mod:`effmodel.plugins`).  Hooks are grouped by
the phase of the pipeline that uses what they register.

A plugin is a module (or object) with functions decorated by
:data:`effmodel.hookimpl`, exposed through the ``effmodel`` entry-point group.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("effmodel")


# --- What to run: inputs ----------------------------------------------------


@hookspec
def register_architectures(register: Callable[..., None]) -> None:
    """Contribute network architectures.

    :param register: call ``register(spec)`` with an
        :class:`effmodel.specs.ArchitectureSpec` for each architecture.  Names
        must be unique across all plugins; a later duplicate is skipped with a
        warning.
    :returns: nothing; results are collected through ``register``.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Contribute datasets.

    :param register: call ``register(dataset)`` with an object satisfying
        :class:`effmodel.datasets.Dataset` (``name``, ``input_shape``,
        ``num_classes``, ``load(data_dir)``).
    :returns: nothing; results are collected through ``register``.
    """


# --- How to run it: simulation ----------------------------------------------


@hookspec
def register_simulators(register: Callable[..., None]) -> None:
    """Contribute spiking-network simulators.

    :param register: call ``register(simulator)`` with an object satisfying
        :class:`effmodel.simulation.Simulator`: a ``name``, a one-line
        ``description`` and ``open(network, config)`` returning a session whose
        ``run_batch(x, y)`` returns a :class:`effmodel.simulation.BatchResult`.
        Heavy frameworks must be imported inside ``open``, never at module
        import, so that ``effmodel --help`` stays fast.
    :returns: nothing; results are collected through ``register``.
    """


# --- What it costs: accounting ----------------------------------------------


@hookspec
def register_cost_models(register: Callable[..., None]) -> None:
    """Contribute energy/cost models that turn operation counts into costs.

    :param register: call ``register(model)`` with an
        :class:`effmodel.costs.CostModel`.
    :returns: nothing; results are collected through ``register``.
    """
