"""Where effmodel finds its reference data and keeps its caches.

The reference data lives in the repository's top-level ``data/`` folder
(``data/README.md``) and ships as package data of the distribution that owns
it (``<package>/data`` is a symlink to ``data/`` that the wheel build
follows), so it is found the same way in an editable checkout and in an
ordinary wheel install (read through :mod:`importlib.resources`):

- ``data/architectures/*.toml`` and ``data/table2.csv``
  (distribution ``effmodel-reference``);
- cost models reach the core only through the plugin registry; the
  ``effmodel-costs`` plugin keeps its presets in its own package data.

``EFFMODEL_REFERENCE_DIR`` overrides all of them with one folder laid out as
``architectures/``, ``table2.csv`` and ``cost_models.toml`` (the last read by
the ``effmodel-costs`` plugin).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import UsageError

REFERENCE_ENV = "EFFMODEL_REFERENCE_DIR"
CACHE_ENV = "EFFMODEL_CACHE_DIR"


def _override() -> Path | None:
    raw = os.environ.get(REFERENCE_ENV)
    if not raw:
        return None
    d = Path(raw).expanduser()
    if not d.is_dir():
        raise UsageError(f"{REFERENCE_ENV}={raw} is not a folder")
    return d


def _package_data(package: str, distribution: str) -> Path:
    """``<package>/data`` of an installed distribution, as a filesystem path."""
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise UsageError(f"reference data needs the {distribution} distribution, which is not installed; "
                         f"install it or set {REFERENCE_ENV}") from None
    path = Path(str(root / "data"))
    if not path.is_dir():
        raise UsageError(f"{distribution} is installed without its data folder ({path}); reinstall it")
    return path


def architectures_dir() -> Path:
    """The eight reference architecture specs (``*.toml``)."""
    override = _override()
    d = override / "architectures" if override else _package_data("effmodel_reference", "effmodel-reference") / "architectures"
    if not d.is_dir():
        raise UsageError(f"reference architectures folder not found at {d}")
    return d


def table2_csv() -> Path:
    """The 2019 report's Table 2 (may be absent under an override folder)."""
    override = _override()
    return override / "table2.csv" if override else _package_data("effmodel_reference", "effmodel-reference") / "table2.csv"


def cost_models_toml() -> Path:
    """Deprecated: the costs plugin's presets file (``effmodel_costs.presets_path``).

    The core reads cost models only through the plugin registry
    (``effmodel.plugins.get_cost_models()``, grouped by role with
    :func:`effmodel.accounting.reprice.presets_by_role`); this stays for code
    written before that and will go."""
    try:
        from effmodel_costs import presets_path
    except ModuleNotFoundError:
        raise UsageError("the cost-model presets need the effmodel-costs distribution, which is not installed") from None
    return presets_path()


def cache_dir(option: str | Path | None = None) -> Path:
    """Trained-model cache: ``--cache-dir``, ``EFFMODEL_CACHE_DIR`` or ``~/.cache/effmodel``."""
    raw = option or os.environ.get(CACHE_ENV)
    d = Path(raw).expanduser() if raw else Path.home() / ".cache" / "effmodel"
    d.mkdir(parents=True, exist_ok=True)
    return d
