"""Exact operation counts (moved to :mod:`effmodel.accounting.ops`; the
per-layer work and access model to :mod:`effmodel.accounting.work` and
:mod:`effmodel.accounting.access`).  This module re-exports the names it
always had; its docstring is that of the counting conventions."""

from __future__ import annotations

from .accounting import ops as _ops
from .accounting.access import (ACCESS_KINDS, FIRST_LAYER_POLICIES, AccessCounts, ann_accesses,  # noqa: F401
                                snn_accesses)
from .accounting.ops import *  # noqa: F401,F403
from .accounting.ops import POOL_TYPES, _axis_pad, _prod, _next_receiver  # noqa: F401
from .accounting.work import (LayerWork, NetworkWork, _source_index, ann_effective_ops, network_work,  # noqa: F401
                              work_from_counts)

__doc__ = _ops.__doc__
