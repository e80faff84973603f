"""Moved: :mod:`effmodel.analysis` (one module per report section).  This
name stays for code written against it; new code imports from
``effmodel.analysis.report`` and friends."""

from .analysis.fair import fair_frame  # noqa: F401
from .analysis.figures import _in_network_order  # noqa: F401
from .analysis.frame import Inputs, load_inputs  # noqa: F401
from .analysis.render import (  # noqa: F401
    FORMATS, Document, Figure, Pre, Section, Table, Text, render_html, render_markdown, write,
)
from .analysis.report import build, generate  # noqa: F401
