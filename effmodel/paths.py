"""Where effmodel finds its reference data and keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

REFERENCE_ENV = "EFFMODEL_REFERENCE_DIR"
CACHE_ENV = "EFFMODEL_CACHE_DIR"


def reference_data_dir() -> Path:
    """The repository's ``data/`` folder (architecture specs, Table 2, cost
    presets).  ``EFFMODEL_REFERENCE_DIR`` overrides it; effmodel is installed
    in editable mode from its checkout, so the folder sits beside the package."""
    raw = os.environ.get(REFERENCE_ENV)
    d = Path(raw) if raw else Path(__file__).resolve().parent.parent / "data"
    if not (d / "architectures").is_dir():
        raise UsageError(f"reference data folder not found at {d}; set {REFERENCE_ENV} to effmodel's data/ folder")
    return d


def cache_dir(option: str | Path | None = None) -> Path:
    """Trained-model cache: ``--cache-dir``, ``EFFMODEL_CACHE_DIR`` or ``~/.cache/effmodel``."""
    raw = option or os.environ.get(CACHE_ENV)
    d = Path(raw).expanduser() if raw else Path.home() / ".cache" / "effmodel"
    d.mkdir(parents=True, exist_ok=True)
    return d
