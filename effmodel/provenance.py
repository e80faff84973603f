"""Provenance: what made a result, stored with it, and whether a stored result is still current.

Every results row carries (:data:`PROVENANCE_COLUMNS`):

``simulator_options``
    the ``--option`` settings as canonical JSON (sorted keys, no spaces;
    ``{}`` when none), so variants of one simulator are told apart;
``input_encoding``, ``coding`` and ``readout``
    the input encoding (``analog``/``poisson``), the neural code
    (``rate``/``ttfs``, :data:`effmodel.simulation.CODINGS`; empty in rows
    stored before codes existed, which are all rate-coded) and the readout rule;
``plugin_versions``
    canonical JSON ``{distribution: version}`` of the plugins that contributed
    the architecture, the dataset, the simulator and the cost model (an
    in-process plugin appears as ``"<name> (in-process)"`` with its
    ``__version__``, or ``""``);
``dataset_fingerprint``
    what the dataset contained (:func:`effmodel.datasets.dataset_fingerprint`).

The item key (:func:`effmodel.pipeline.item_key`) is unchanged, so stored
results keep their identity.  Instead, :func:`already_stored` treats a
stored result as current only when its ``plugin_versions`` equal the ones
installed now: a new plugin version recomputes the item (and the new row
replaces the old one), unless ``reuse_across_versions``.  Rows written by
effmodel versions that did not record ``plugin_versions`` are kept and
reused as they are.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

PROVENANCE_COLUMNS = ("simulator_options", "input_encoding", "coding", "readout", "plugin_versions", "dataset_fingerprint")

_HOOKS = (("register_architectures", "model"), ("register_datasets", "dataset"),
          ("register_simulators", "simulator"), ("register_cost_models", "cost_model"))


def plugin_versions(spec: Any, settings: Any) -> dict[str, str]:
    """``{distribution: version}`` of the plugins that registered ``spec``, its
    dataset, ``settings.simulator`` and ``settings.cost_model`` (those
    registered at all: a ``--model-file`` architecture has no plugin)."""
    from . import plugins

    names = {"model": spec.name, "dataset": spec.dataset, "simulator": settings.simulator,
             "cost_model": settings.cost_model}
    out: dict[str, str] = {}
    for hook, what in _HOOKS:
        owner = plugins.owner_of(hook, names[what])
        if owner is None:
            continue
        dist, version = plugins.distribution_of(owner)
        out[f"{owner} (in-process)" if dist == plugins.IN_PROCESS else dist] = version
    return dict(sorted(out.items()))


def canonical_json(value: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces: equal mappings give equal text."""
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=str)


def provenance_columns(spec: Any, settings: Any) -> dict[str, Any]:
    """The :data:`PROVENANCE_COLUMNS` of one result of ``spec`` under ``settings``
    (a :class:`effmodel.pipeline.RunSettings`)."""
    from .datasets import loaded_fingerprint

    return {
        "simulator_options": canonical_json(settings.simulator_options),
        "input_encoding": settings.input_encoding,
        "coding": settings.coding,
        "readout": settings.readout,
        "plugin_versions": current_versions(spec, settings),
        "dataset_fingerprint": loaded_fingerprint(spec.dataset),
    }


def current_versions(spec: Any, settings: Any) -> str:
    """The ``plugin_versions`` text a result of ``spec`` under ``settings`` would get now."""
    return canonical_json(plugin_versions(spec, settings))


def same_versions(stored: str | None, current: str, reuse_across_versions: bool = False) -> bool:
    """Whether a stored row's ``plugin_versions`` let it stand for ``current``:
    equal versions, or none recorded (a row from older effmodel: reused), or
    ``reuse_across_versions``."""
    if stored in (None, "") or reuse_across_versions:
        return True
    try:
        return json.loads(stored) == json.loads(current)
    except (TypeError, ValueError):
        return False


def already_stored(store: Any, item_key: str, simulator: str, current_versions: str,
                   reuse_across_versions: bool = False) -> bool:
    """Whether ``store`` holds a current result of (``item_key``, ``simulator``):
    the skip test of ``run``/``sweep``, in place of ``store.has_result``.

    ``current_versions``: :func:`current_versions` of the item's spec and settings.
    """
    stored = stored_versions(store)
    key = (item_key, simulator)
    return key in stored and same_versions(stored[key], current_versions, reuse_across_versions)


def stored_versions(store: Any) -> dict[tuple[str, str], str | None]:
    """``{(item_key, simulator): plugin_versions}`` of every stored result, read
    once (the driver checks many items against one store)."""
    return {(row.get("item_key"), row.get("simulator")): row.get("plugin_versions") for row in store.results()}
