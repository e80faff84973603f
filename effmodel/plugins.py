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
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, TypeVar

import pluggy

from . import hookspecs

ENTRY_POINT_GROUP = "effmodel"
HOOK_NAMES = ("register_architectures", "register_datasets", "register_simulators", "register_cost_models")

pm = pluggy.PluginManager("effmodel")
pm.add_hookspecs(hookspecs)

_loaded = False
_dists: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
_registries: dict[str, dict[str, Any]] = {}
_owners: dict[tuple[str, str], str] = {}  # (hook, registered name) -> plugin

T = TypeVar("T")


def warn(message: str) -> None:
    """One line on stderr, never a traceback."""
    print(f"effmodel: warning: {message}", file=sys.stderr)


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
            warn(f"plugin {ep.name!r} failed to load: {type(exc).__name__}: {exc}")
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            warn(f"plugin {ep.name!r} could not be registered: {type(exc).__name__}: {exc}")
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
        warn(f"plugin {name!r} implements an unknown hook and was disabled: {exc}")
        pm.unregister(plugin)
        _check_pending()


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register an in-process plugin object (tests, notebooks); clears registries."""
    load_plugins()
    registered = pm.register(plugin, name=name)
    _check_pending()
    _registries.clear()
    return registered or (name or "")


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`; clears registries."""
    pm.unregister(name=name)
    _registries.clear()


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
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(obj: Any, _plugin: str = plugin_name) -> None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"{hook_name} got an object without a name: {obj!r}")
            if name in found:
                warn(f"plugin {_plugin!r}: {hook_name} duplicate name {name!r} skipped")
                return
            found[name] = obj
            _owners[(hook_name, name)] = _plugin

        if trace:
            print(f"effmodel: trace: {hook_name} -> {plugin_name}", file=sys.stderr)
        try:
            impl.function(register=register)
        except Exception as exc:
            warn(f"plugin {plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}")
    _registries[hook_name] = found
    return found


def owner_of(hook_name: str, name: str) -> str | None:
    """Which plugin registered ``name`` through ``hook_name``."""
    _collect(hook_name)
    return _owners.get((hook_name, name))


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


def plugin_infos() -> list[PluginInfo]:
    """Loaded plugins with their distribution and implemented hooks."""
    load_plugins()
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np_: np_[0] or ""):
        if plugin is None:  # blocked
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        dist, version = _dists.get(name, ("(in-process)", ""))
        infos.append(PluginInfo(name=name, distribution=dist, version=version, hooks=hooks))
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
