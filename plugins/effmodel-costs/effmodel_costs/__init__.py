"""Built-in plugin: the cost-model presets of the repository's ``data/cost_models.toml``
(reached through the symlink ``effmodel_costs/data``, shipped as package data).

The core never reads this file: it sees the presets only through the
``register_cost_models`` hook (``effmodel.plugins.get_cost_models()``).  Each
preset states its ``report_role`` and what it ``counts`` and ``leaves_out``,
so the report needs no list of preset names.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from effmodel import hookimpl
from effmodel import load_cost_models
from effmodel.errors import UsageError

REFERENCE_ENV = "EFFMODEL_REFERENCE_DIR"  # a folder that overrides all reference data (see effmodel.paths)


def presets_path() -> Path:
    """The presets file: ``$EFFMODEL_REFERENCE_DIR/cost_models.toml`` when that
    variable is set, else this package's data."""
    raw = os.environ.get(REFERENCE_ENV)
    if raw:
        d = Path(raw).expanduser()
        if not d.is_dir():
            raise UsageError(f"{REFERENCE_ENV}={raw} is not a folder")
        return d / "cost_models.toml"
    return Path(str(resources.files("effmodel_costs") / "data" / "cost_models.toml"))


@hookimpl
def register_cost_models(register):
    for model in load_cost_models(presets_path()):
        register(model)
