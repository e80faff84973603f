"""The plugin manager: loads ``effmodel`` entry points once and builds registries.

Built-in plugins (``plugins/<distribution>/``) load through the same
``effmodel`` entry-point group as third-party ones.  One plugin failing, at
import or inside a hook, is reported in one line on stderr and skipped; the
rest keep working.

Environment variables:

``EFFMODEL_LOAD_PLUGINS``
    comma-separated entry-point names to load; set but empty loads none.
``EFFMODEL_BLOCK_PLUGINS``
    comma-separated entry-point names never to load.
``EFFMODEL_TRACE_HOOKS``
    if set (non-empty), every hook call per plugin is traced on stderr.
``EFFMODEL_PREFER``
    comma-separated ``plugin:name`` pairs: for ``name``, use the object that
    ``plugin`` registers, even over a built-in's (see :func:`_choose`).
``EFFMODEL_DEBUG``
    ``1``: every plugin failure reported in one line is followed by its traceback.

Names: a name belongs to one object per hook.  When several plugins register
it, a built-in plugin (a distribution in :data:`BUILTIN_DISTRIBUTIONS`) wins
over third-party ones, each skipped plugin is named in a one-line warning,
and two third-party plugins with one name (and no built-in) are a one-line
:class:`~effmodel.errors.PluginError` naming both, unless ``EFFMODEL_PREFER``
picks one.

Every registered object is checked against its hook's protocol
(:func:`registration_problem`); a wrong one is skipped with a one-line
warning naming the plugin.  Calls into a plugin's objects go through
:func:`plugin_call`, which turns an exception into one
:class:`~effmodel.errors.PluginError` line naming the plugin and the call.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Iterator, Mapping, TypeVar

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "effmodel"
PREFER_ENV = "EFFMODEL_PREFER"
BUILTIN_DISTRIBUTIONS = frozenset({
    "effmodel-reference", "effmodel-costs", "effmodel-inisim", "effmodel-norse", "effmodel-numpysim",
})
"""The distributions shipped with effmodel (``plugins/``): their names win over third-party plugins'."""
IN_PROCESS = "(in-process)"  # the distribution of a plugin object registered with register_plugin
HOOK_NAMES = ("register_architectures", "register_datasets", "register_simulators", "register_cost_models")

pm = pluggy.PluginManager("effmodel")
pm.add_hookspecs(hookspecs)

_loaded = False
_dists: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_registries: dict[str, dict[str, Any]] = {}
_owners: dict[tuple[str, str], str] = {}  # (hook, registered name) -> plugin

T = TypeVar("T")


def warn(message: str, exc: BaseException | None = None) -> None:
    """One line on stderr; ``exc``'s traceback follows only with ``EFFMODEL_DEBUG=1``."""
    print(f"effmodel: warning: {message}", file=sys.stderr)
    if exc is not None:
        from .errors import print_traceback_if_debug

        print_traceback_if_debug(exc)


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def load_plugins() -> None:
    """Load every ``effmodel`` entry point once (idempotent)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = _names_from_env("EFFMODEL_LOAD_PLUGINS")
    blocked = _names_from_env("EFFMODEL_BLOCK_PLUGINS") or set()
    for name in blocked:
        pm.set_blocked(name)
    seen: set[str] = set()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen or (allowed is not None and ep.name not in allowed) or ep.name in blocked:
            continue
        seen.add(ep.name)
        try:
            plugin = ep.load()
        except Exception as exc:  # one bad plugin must not break the others
            warn(f"plugin {ep.name!r} failed to load: {type(exc).__name__}: {exc}", exc)
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            warn(f"plugin {ep.name!r} could not be registered: {type(exc).__name__}: {exc}", exc)
            continue
        dist = getattr(ep, "dist", None)
        _dists[ep.name] = (dist.name, dist.version) if dist is not None else ("?", "?")
    _check_pending()


def _check_pending() -> None:
    """Unregister plugins that implement hooks with no spec (usually typos)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin = exc.plugin
        name = pm.get_name(plugin) or repr(plugin)
        warn(f"plugin {name!r} implements an unknown hook and was disabled: {exc}{_suggestion(plugin)}")
        pm.unregister(plugin)
        _check_pending()


def _suggestion(plugin: object) -> str:
    """``; did you mean 'register_simulators'?`` for a misspelt hook implementation, else ''."""
    import difflib

    for attr in dir(plugin):
        if attr in HOOK_NAMES or pm.parse_hookimpl_opts(plugin, attr) is None:
            continue
        close = difflib.get_close_matches(attr, HOOK_NAMES, n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]!r}?"
    return ""


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register an in-process plugin object (tests, notebooks); clears registries."""
    load_plugins()
    if name is not None and pm.has_plugin(name):
        from .errors import UsageError

        raise UsageError(f"a plugin named {name!r} is already registered (an installed plugin's entry point?); "
                         f"register this one under another name")
    if pm.is_registered(plugin):
        from .errors import UsageError

        raise UsageError(f"this plugin object is already registered as {pm.get_name(plugin)!r}")
    registered = pm.register(plugin, name=name) or (name or "")
    _dists[registered] = (IN_PROCESS, str(getattr(plugin, "__version__", "") or ""))
    _check_pending()
    _registries.clear()
    _owners.clear()
    return registered


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`; clears registries."""
    pm.unregister(name=name)
    _dists.pop(name, None)
    _registries.clear()
    _owners.clear()


def _collect(hook_name: str) -> dict[str, Any]:
    """Call one registration hook plugin by plugin, isolating failures."""
    load_plugins()
    if hook_name in _registries:
        return _registries[hook_name]
    trace = bool(os.environ.get("EFFMODEL_TRACE_HOOKS"))
    found: dict[str, Any] = {}
    hook = getattr(pm.hook, hook_name)
    # get_hookimpls() lists plugins in registration order (built-ins, sorted
    # by entry-point name, then in-process ones): the first name registered wins.
    candidates: dict[str, list[tuple[str, Any]]] = {}  # name -> [(plugin, object)], registration order
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(obj: Any, _plugin: str = plugin_name) -> None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                warn(f"plugin {_plugin!r}: {hook_name} got an object without a name, skipped: {_short_repr(obj)}")
                return
            problem = registration_problem(hook_name, obj)
            if problem:
                warn(f"plugin {_plugin!r}: {hook_name} {name!r} skipped: {problem}")
                return
            note = registration_note(hook_name, obj)
            if note:
                warn(f"plugin {_plugin!r}: {hook_name} {name!r}: {note}")
            entries = candidates.setdefault(name, [])
            if any(p == _plugin for p, _ in entries):
                warn(f"plugin {_plugin!r}: {hook_name} registers {name!r} twice; the second one is skipped")
                return
            entries.append((_plugin, obj))

        if trace:
            print(f"effmodel: trace: {hook_name} -> {plugin_name}", file=sys.stderr)
        try:
            impl.function(register=register)
        except Exception as exc:
            warn(f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {_one_line(exc)}", exc)
    preferred = _preferences()
    for name, entries in candidates.items():
        winner = _choose(hook_name, name, entries, preferred.get(name))
        found[name] = dict(entries)[winner]
        _owners[(hook_name, name)] = winner
    _registries[hook_name] = found
    return found


def is_builtin(plugin_name: str) -> bool:
    """Whether ``plugin_name`` comes from one of :data:`BUILTIN_DISTRIBUTIONS`."""
    return _dists.get(plugin_name, (IN_PROCESS, ""))[0] in BUILTIN_DISTRIBUTIONS


def _preferences() -> dict[str, str]:
    """``EFFMODEL_PREFER=plugin:name,...`` as name -> plugin; a malformed entry is warned about and ignored."""
    prefer: dict[str, str] = {}
    for entry in _names_from_env(PREFER_ENV) or ():
        plugin, sep, name = entry.partition(":")
        if not sep or not plugin.strip() or not name.strip():
            warn(f"{PREFER_ENV}: {entry!r} ignored, expected plugin:name (e.g. myplugin:SmallCNN1)")
            continue
        prefer[name.strip()] = plugin.strip()
    return prefer


def _choose(hook_name: str, name: str, entries: list[tuple[str, Any]], preferred: str | None) -> str:
    """The plugin whose object ``name`` refers to; warns about each skipped one.

    ``EFFMODEL_PREFER`` first, then the built-in; two third-party plugins and
    no built-in: a one-line :class:`PluginError` naming both.
    """
    owners = [p for p, _ in entries]
    if len(owners) == 1:
        return owners[0]
    kind = hook_name.removeprefix("register_").rstrip("s").replace("_", " ")
    if preferred in owners:
        winner, why = preferred, f"{PREFER_ENV}={preferred}:{name} prefers plugin {preferred!r}"
    else:
        if preferred is not None:
            warn(f"{PREFER_ENV}={preferred}:{name} ignored: plugin {preferred!r} does not register {kind} {name!r} "
                 f"(registered by {', '.join(map(repr, owners))})")
        builtins = [p for p in owners if is_builtin(p)]
        if not builtins:
            from .errors import PluginError

            raise PluginError(
                f"plugins {' and '.join(map(repr, owners))} both register the {kind} {name!r}; choose one with "
                f"{PREFER_ENV}={owners[0]}:{name} or block the other with EFFMODEL_BLOCK_PLUGINS")
        winner = builtins[0]
        why = f"the name belongs to the built-in plugin {winner!r} ({PREFER_ENV}=<plugin>:{name} to use another)"
    for skipped in owners:
        if skipped != winner:
            warn(f"plugin {skipped!r}: {hook_name} {name!r} skipped: {why}")
    return winner


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return (msg[:300] + "...") if len(msg) > 300 else msg


def _short_repr(obj: Any) -> str:
    text = " ".join(repr(obj).split())
    return (text[:80] + "...") if len(text) > 80 else text


def registration_problem(hook_name: str, obj: Any) -> str | None:
    """Why ``obj`` does not satisfy ``hook_name``'s protocol (None if it does).

    Tolerant of extra attributes and of new fields in the core's dataclasses:
    only what the core relies on is checked.
    """
    if hook_name == "register_architectures":
        from .specs import ArchitectureSpec, validate

        if not isinstance(obj, ArchitectureSpec):
            return f"expected an effmodel.specs.ArchitectureSpec, got {type(obj).__name__}"
        try:
            validate(obj)
        except Exception as exc:  # noqa: BLE001 - any broken spec is skipped, not fatal
            return f"invalid architecture: {_one_line(exc)}"
        return None
    if hook_name == "register_datasets":
        shape = getattr(obj, "input_shape", None)
        if not callable(getattr(obj, "load", None)):
            return f"a dataset needs a load(data_dir) method; {type(obj).__name__} has none"
        if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            return f"input_shape must be (height, width, channels) of positive ints, got {shape!r}"
        classes = getattr(obj, "num_classes", None)
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
            return f"num_classes must be an int >= 2, got {classes!r}"
        fraction = getattr(obj, "validation_fraction", None)
        if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
            return f"validation_fraction must be a number in [0, 1), got {fraction!r}"
        return None
    if hook_name == "register_simulators":
        if not callable(getattr(obj, "open", None)):
            return f"a simulator needs an open(network, config) method; {type(obj).__name__} has none"
        if not isinstance(getattr(obj, "description", None), str):
            return "a simulator needs a one-line str description"
        from .options import options_problem

        return options_problem(obj)
    if hook_name == "register_cost_models":
        from .costs import CostModel, validate_cost_model

        if not isinstance(obj, CostModel):
            return f"expected an effmodel.costs.CostModel, got {type(obj).__name__}"
        problems = validate_cost_model(obj)
        return "; ".join(problems) if problems else None
    return None


def registration_note(hook_name: str, obj: Any) -> str | None:
    """What is missing from an accepted object that the docs ask for (warned, not skipped)."""
    if hook_name == "register_cost_models" and not str(getattr(obj, "citation", "") or "").strip():
        return "no citation; say where the numbers come from, or label them made up (docs/hooks.md)"
    return None


@contextmanager
def plugin_call(hook_name: str, name: str, kind: str, call: str) -> Iterator[None]:
    """Run a call into a registered object; an exception becomes one line.

    ``with plugin_call("register_simulators", "norse", "simulator", "run_batch"): ...``
    turns anything but an :class:`~effmodel.errors.EffmodelError` (already a
    one-line message for the user) into a :class:`~effmodel.errors.PluginError`
    naming the plugin, the object and the call; the original exception is its
    ``__cause__`` (shown with ``EFFMODEL_DEBUG=1``).
    """
    from .errors import EffmodelError, PluginError

    try:
        yield
    except EffmodelError:
        raise
    except Exception as exc:
        owner = _owners.get((hook_name, name))
        who = f"plugin {owner!r} ({kind} {name!r})" if owner else f"{kind} {name!r}"
        raise PluginError(f"{who} failed in {call}: {type(exc).__name__}: {_one_line(exc)}") from exc


def owner_of(hook_name: str, name: str) -> str | None:
    """Which plugin registered ``name`` through ``hook_name``."""
    _collect(hook_name)
    return _owners.get((hook_name, name))


def distribution_of(plugin_name: str) -> tuple[str, str]:
    """(distribution, version) of a loaded plugin; ``(IN_PROCESS, __version__ or "")``
    for one registered in-process."""
    load_plugins()
    return _dists.get(plugin_name, (IN_PROCESS, ""))


def get_architectures() -> dict[str, Any]:
    return _collect("register_architectures")


def get_datasets() -> dict[str, Any]:
    return _collect("register_datasets")


def get_simulators() -> dict[str, Any]:
    return _collect("register_simulators")


def get_cost_models() -> dict[str, Any]:
    return _collect("register_cost_models")


def lookup(kind: str, registry: dict[str, T], name: str) -> T:
    """Return ``registry[name]`` or raise a one-line :class:`UsageError`."""
    from .errors import UsageError

    if name not in registry:
        known = ", ".join(sorted(registry)) or "none installed"
        raise UsageError(f"unknown {kind} {name!r} (known: {known})")
    return registry[name]


@dataclass(frozen=True)
class PluginInfo:
    """What ``effmodel plugins`` reports about one loaded plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...] = field(default_factory=tuple)
    contributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # hook -> names it owns


def plugin_infos() -> list[PluginInfo]:
    """Loaded plugins with their distribution, implemented hooks and the names
    each hook contributed (those it owns: a skipped duplicate is not listed)."""
    load_plugins()
    owned: dict[str, dict[str, list[str]]] = {}
    for hook_name in HOOK_NAMES:
        for obj_name in _collect(hook_name):
            owned.setdefault(_owners[(hook_name, obj_name)], {}).setdefault(hook_name, []).append(obj_name)
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np_: np_[0] or ""):
        if plugin is None:  # blocked
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        dist, version = _dists.get(name, (IN_PROCESS, ""))
        contributes = {h: tuple(names) for h, names in owned.get(name, {}).items()}
        infos.append(PluginInfo(name=name, distribution=dist, version=version, hooks=hooks, contributes=contributes))
    return infos


def _reset_for_tests() -> None:
    """Forget loaded plugins so a test can reload with another environment."""
    global _loaded
    for name, plugin in list(pm.list_name_plugin()):
        if plugin is not None:
            pm.unregister(plugin)
    for name in list(pm._name2plugin):  # blocked names
        pm._name2plugin.pop(name, None)
    _loaded = False
    _dists.clear()
    _registries.clear()
    _owners.clear()
