"""Moved: :mod:`effmodel.analysis.regressions` (supporting regressions) and
:mod:`effmodel.analysis.verdict` (the verdict).  This name stays for code
written against it; new code imports from ``effmodel.analysis``."""

from .analysis.regressions import *  # noqa: F401,F403
from .analysis.regressions import (  # noqa: F401 - names the star skips
    _fit, _model_fit, analyse, band, diagnostics, dominance, fmt, paper_frame, prepare, verdicts_by_cost,
)
