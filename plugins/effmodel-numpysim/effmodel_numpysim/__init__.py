"""effmodel plugin: the ``numpy`` reference simulator (see :mod:`.simulator`)."""

from effmodel import hookimpl


@hookimpl
def register_simulators(register):
    from .simulator import NumpySimulator  # numpy only, but keep plugin import cheap

    register(NumpySimulator())
