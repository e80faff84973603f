"""Built-in plugin: the cost-model presets of ``effmodel_costs/data/cost_models.toml`` (package data)."""

from __future__ import annotations

from effmodel import hookimpl
from effmodel.costs import load_cost_models
from effmodel.paths import cost_models_toml


@hookimpl
def register_cost_models(register):
    for model in load_cost_models(cost_models_toml()):
        register(model)
