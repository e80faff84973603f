"""Errors that the CLI reports as one line and a non-zero exit, never a traceback."""


class EffmodelError(Exception):
    """Base class: anything the user can fix (input, data, configuration)."""

    exit_code = 2


class UsageError(EffmodelError):
    """Bad option value, unknown name, impossible combination."""


class DataError(EffmodelError):
    """A dataset or model file is missing, corrupt or unsupported."""

    exit_code = 3


class SimulationError(EffmodelError):
    """A simulator could not run the network as asked."""

    exit_code = 4
