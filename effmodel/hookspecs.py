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
        :class:`effmodel.specs.ArchitectureSpec` for each architecture.  A name
        belongs to one object: a built-in plugin's wins (a third-party
        duplicate is skipped with a warning naming it), two third-party
        plugins with one name are an error naming both, and
        ``EFFMODEL_PREFER=plugin:name`` decides explicitly (the same for
        every hook; see :mod:`effmodel.plugins`).
    :returns: nothing; results are collected through ``register``.
    """


@hookspec
def register_datasets(register: Callable[..., None]) -> None:
    """Contribute datasets.

    :param register: call ``register(dataset)`` with an object satisfying
        :class:`effmodel.datasets.Dataset` (``name``, ``input_shape``,
        ``num_classes``, ``validation_fraction``, ``load(data_dir)``, an
        optional ``version``).  What ``load`` returns is checked on every
        load (:func:`effmodel.datasets.check_arrays`: uint8 pixels or floats
        in [0, 1], integer labels ``(N,)`` in ``[0, num_classes)``).
    :returns: nothing; results are collected through ``register``.
    """


# --- How to run it: simulation ----------------------------------------------


@hookspec
def register_simulators(register: Callable[..., None]) -> None:
    """Contribute spiking-network simulators.

    :param register: call ``register(simulator)`` with an object satisfying
        :class:`effmodel.simulation.Simulator`: a ``name``, a one-line
        ``description`` and ``open(network, config)`` returning a session whose
        ``run_batch(x, y)`` returns a :class:`effmodel.simulation.BatchResult`;
        optionally ``options`` (a tuple of
        :class:`effmodel.options.SimulatorOption`, checked before training),
        ``readouts``, ``input_encodings`` and ``codings`` (the readout rules,
        input encodings and neural codes it honours; ``docs/hooks.md``).
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
