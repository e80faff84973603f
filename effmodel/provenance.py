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
    ``__version__``, or ``""``), and of the core itself: ``"effmodel"`` with
    :func:`core_version`, effmodel's version plus a hash of the code that
    counts and prices what is stored (``0.1.0+counting.<12 hex>``);
``dataset_fingerprint``
    what the dataset contained (:func:`effmodel.datasets.dataset_fingerprint`).

The item key (:func:`effmodel.pipeline.item_key`) is unchanged, so stored
results keep their identity.  Instead, :func:`already_stored` treats a
stored result as current only when its ``plugin_versions`` equal the ones
installed now: a new plugin version, or a change of the core's counting
code under unchanged plugin versions, recomputes the item (and the new row
replaces the old one), unless ``reuse_across_versions``.  Rows written by
effmodel versions that did not record ``plugin_versions`` are kept and
reused as they are; so are rows that recorded plugin versions but not yet
the core's (the committed campaign's): their plugins alone decide.

Why a hash and not the version alone: effmodel's version is not bumped for
every change of a counting rule, and a rule changed without a bump would
leave stale rows.  The hash is of the code's syntax tree without docstrings
(:func:`code_digest`), so comments, docstrings and formatting do not
recompute anything; any change of what the code does (or a refactoring)
does.  Only the modules whose output is stored are hashed
(:data:`COUNTING_CODE`): exact counts, per-layer work, access policies,
memory, pricing, result columns and the cost point; the report's repricing
(``accounting/reprice.py``) and the simulators are not (simulators carry
their own plugin versions).  A new Python minor version may change the
syntax-tree dump and so recompute once.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

CORE = "effmodel"  # the core's entry in plugin_versions
# The core's modules whose output a result row stores (relative to the effmodel package).
COUNTING_CODE = ("accounting/ops.py", "accounting/work.py", "accounting/access.py", "accounting/memory.py",
                 "accounting/pricing.py", "accounting/columns.py", "threshold.py")

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
    out[CORE] = core_version()
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=1)
def core_version() -> str:
    """effmodel's version and the :func:`code_digest` of :data:`COUNTING_CODE`,
    e.g. ``0.1.0+counting.1a2b3c4d5e6f`` (computed once per process)."""
    from . import __version__

    package = Path(__file__).resolve().parent
    return f"{__version__}+counting.{code_digest(package / name for name in COUNTING_CODE)}"


def code_digest(paths: Iterable[Path]) -> str:
    """12 hex digits of SHA-256 over the syntax trees of the Python files
    ``paths`` (in the order given), docstrings dropped: comments, docstrings
    and layout do not change it, a change of what the code does does."""
    h = hashlib.sha256()
    for path in paths:
        tree = ast.parse(Path(path).read_text(), filename=str(path))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(Path(path).name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()[:12]


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
    ``reuse_across_versions``.  A row that recorded its plugins' versions but
    not the core's (:data:`CORE`, recorded since issue 22) is judged by its
    plugins alone."""
    if stored in (None, "") or reuse_across_versions:
        return True
    try:
        then, now = json.loads(stored), json.loads(current)
    except (TypeError, ValueError):
        return False
    if not isinstance(then, dict) or not isinstance(now, dict):
        return False
    if CORE not in then:
        now.pop(CORE, None)
    return then == now


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
