"""The analysis behind ``effmodel report``: one module per report section.

``frame`` (stored results read and prepared), ``verdict`` (the primary
specification's depth-vs-size contrast, ``docs/analysis.md``), ``robustness``
(the verdict under every pricing convention, repriced from stored counts),
``mechanism`` (what carries a depth effect), ``regressions`` (supporting
F tests, HC3, VIF, diagnostics), ``figures`` and ``render`` (the document
model, its sections and the HTML/Markdown writers).  Nothing here imports
pandas, statsmodels or matplotlib at import time.
"""
