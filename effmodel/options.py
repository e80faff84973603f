"""Declared simulator options: what ``--option KEY=VALUE`` may set, checked before any work.

A simulator plugin declares its options as a tuple of :class:`SimulatorOption`
in its attribute ``options``.  :func:`check_options` then refuses an unknown
key (suggesting the nearest declared name) or a value of the wrong type or
outside the allowed values, in one line naming the simulator and the option,
before a network is trained.  A simulator without ``options`` declares
nothing: its options reach ``open`` unchecked, as before (``effmodel plugins``
shows them as undeclared).

Values arrive converted by the CLI (``true``/``false`` -> bool, then int,
then float, else the string as given), so a float option accepts an int and
an option that takes a number or a word declares ``type=(int, str)``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import UsageError


@dataclass(frozen=True)
class SimulatorOption:
    """One option a simulator accepts.

    ``name``: the key of ``--option name=value``.  ``type``: the accepted
    Python type(s) after the CLI's conversion (``bool``, ``int``, ``float``,
    ``str``, or a tuple of them).  ``choices``: the allowed values (empty: any
    value of the type).  ``default``: what the simulator uses when the option
    is not given (``None``: decided at run time, e.g. by the device; say so in
    ``doc``).  ``doc``: one line for ``effmodel plugins`` and the docs.
    """

    name: str
    type: type | tuple[type, ...] = str
    default: Any = None
    choices: tuple[Any, ...] = ()
    doc: str = ""

    @property
    def type_names(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join(t.__name__ for t in types)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable (None if it is)."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        ok = any(_is(value, t) for t in types)
        if not ok:
            return f"expects {self.type_names}, got {value!r}"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))}, got {value!r}"
        return None


def _is(value: Any, t: type) -> bool:
    if t is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if t is float:
        return isinstance(value, (int, float))
    return isinstance(value, t)


CORE_OPTIONS: tuple[SimulatorOption, ...] = (
    SimulatorOption("keep_workdir", bool, False, doc="keep the simulator's scratch folder after the run (handled by the core)"),
)
"""Options the core handles for any simulator that accepts them: declare them
with ``options = (..., *CORE_OPTIONS)`` to accept them."""


def declared_options(simulator: Any) -> tuple[SimulatorOption, ...] | None:
    """The simulator's declared options; None when it declares none."""
    declared = getattr(simulator, "options", None)
    return None if declared is None else tuple(declared)


def options_problem(simulator: Any) -> str | None:
    """Why a simulator's ``options`` attribute is malformed (None if fine or absent); used at registration."""
    declared = getattr(simulator, "options", None)
    if declared is None:
        return None
    if not isinstance(declared, (tuple, list)) or not all(isinstance(o, SimulatorOption) for o in declared):
        return "options must be a tuple of effmodel.options.SimulatorOption"
    names = [o.name for o in declared]
    if len(set(names)) != len(names):
        return f"options declares a name twice: {sorted(n for n in set(names) if names.count(n) > 1)}"
    for o in declared:
        if o.default is not None and o.problem(o.default):
            return f"option {o.name!r}: its default {o.problem(o.default)}"
    return None


def check_options(simulator: Any, options: Mapping[str, Any]) -> None:
    """Refuse, in one line naming the simulator and the option, an unknown key
    or a bad value; does nothing for a simulator that declares no options."""
    declared = declared_options(simulator)
    if declared is None:
        return
    name = getattr(simulator, "name", simulator)
    by_name = {o.name: o for o in declared}
    for key, value in options.items():
        option = by_name.get(key)
        if option is None:
            close = difflib.get_close_matches(key, list(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"simulator {name!r} has no option {key!r} (known: {', '.join(sorted(by_name))}){hint}")
        problem = option.problem(value)
        if problem:
            raise UsageError(f"simulator {name!r}: option {key} {problem}")


def canonical_options(options: Mapping[str, Any]) -> str:
    """The options as canonical JSON (sorted keys, no spaces): equal settings give equal text."""
    return json.dumps(dict(options), sort_keys=True, separators=(",", ":"), default=str)


def check_config(simulator: Any, config: Any) -> None:
    """Let a simulator refuse, before any training, settings that mean nothing together.

    A simulator may define ``check_config(config)``: it gets the
    :class:`~effmodel.simulation.SimulationConfig` of the run (options,
    coding, readout, input encoding and duration as they will be passed to
    ``open``; ``workdir`` is None and ``batch_size`` not yet resolved) and raises a one-line
    :class:`~effmodel.errors.UsageError` for a combination it cannot simulate,
    e.g. an option that applies to one code only.  The core calls it after
    :func:`check_options`, before any network is trained; ``open`` may repeat
    the check for direct calls.  Anything else it raises becomes a one-line
    :class:`~effmodel.errors.PluginError` naming the plugin."""
    from .plugins import plugin_call

    hook = getattr(simulator, "check_config", None)
    if hook is None:
        return
    name = getattr(simulator, "name", str(simulator))
    with plugin_call("register_simulators", name, "simulator", "check_config"):
        if not callable(hook):
            raise TypeError("check_config is not callable")
        hook(config)
