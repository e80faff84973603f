"""effmodel plugin: the ``inisim`` simulator (snntoolbox 0.6.0's INI simulator).

Only registration lives here.  TensorFlow and snntoolbox are imported lazily
inside :meth:`InisimSimulator.open`, so that loading plugins
(``effmodel --help``) stays fast.
"""

from __future__ import annotations

from effmodel import hookimpl

from .simulator import InisimSimulator


@hookimpl
def register_simulators(register):
    register(InisimSimulator())
