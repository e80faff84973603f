"""Built-in plugin: the cost-model presets of ``data/cost_models.toml``."""

from __future__ import annotations

from effmodel import hookimpl
from effmodel.costs import load_cost_models
from effmodel.paths import reference_data_dir


@hookimpl
def register_cost_models(register):
    for model in load_cost_models(reference_data_dir() / "cost_models.toml"):
        register(model)
