"""Cost models (moved to :mod:`effmodel.accounting.pricing`).  This module
re-exports the names it always had; its docstring is that of the pricing
rules."""

from __future__ import annotations

from .accounting import pricing as _pricing
from .accounting.pricing import *  # noqa: F401,F403
from .accounting.pricing import (RANGE_FIELDS, CostBreakdown, CostModel, LayerCost, SideCost,  # noqa: F401
                                 _probe_counts, load_cost_models, validate_cost_model)
from .accounting.work import work_from_counts  # noqa: F401

__doc__ = _pricing.__doc__
