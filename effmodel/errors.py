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


class PluginError(EffmodelError):
    """A plugin broke its contract: raised inside one of its calls, or
    returned something impossible.  The message names the plugin and the call."""

    exit_code = 5


def debug_enabled() -> bool:
    """``EFFMODEL_DEBUG=1`` (or the CLI's ``--debug``): show tracebacks too."""
    import os

    return os.environ.get("EFFMODEL_DEBUG", "").strip() not in ("", "0")


def print_traceback_if_debug(exc: BaseException) -> None:
    """The full traceback (with its causes) on stderr, only in debug mode."""
    if debug_enabled():
        import sys
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


_line_open = False  # a progress line drawn with "\r" and no newline is on stderr


def note_open_line(is_open: bool = True) -> None:
    """Progress displays that leave a line open say so, so an error starts on its own line."""
    global _line_open
    _line_open = is_open


def close_open_line() -> None:
    """End an open progress line on stderr (nothing if none is open)."""
    global _line_open
    if _line_open:
        import sys

        print(file=sys.stderr, flush=True)
        _line_open = False
