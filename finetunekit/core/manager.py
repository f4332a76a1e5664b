"""The plugin manager: built-ins, entry points and explicit plugins, one per engine.

There is no module-level manager. :func:`get_plugin_manager` makes a fresh one each time,
so two engines in one process never see each other's plugins. Built-in plugins are
registered exactly like third-party ones.
"""

from __future__ import annotations

import importlib
import re
import importlib.metadata
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pluggy

from finetunekit.core import hookspecs
from finetunekit.core.components import COMPONENT_KINDS
from finetunekit.core.errors import (
    FinetunekitError,
    PluginError,
    UnknownComponentError,
    did_you_mean,
    unknown_name_message,
)

PROJECT = "finetunekit"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for hook implementations: ``@finetunekit.hookimpl``."""

BUILTINS_PACKAGE = "finetunekit.plugins"
"""The package whose ``BUILTINS`` tuple names the built-in plugin modules. The engine
knows it by name only, as it knows the entry-point group, and registers each module
through :func:`register_plugin`, the same path as ``--plugin MODULE``."""

CATALOGUE_HOOKS: dict[str, str] = {
    "backbone": "finetunekit_register_backbones",
    "strategy": "finetunekit_register_strategies",
    "head": "finetunekit_register_heads",
    "optimizer": "finetunekit_register_optimizers",
    "format": "finetunekit_register_formats",
    "data": "finetunekit_register_data_sources",
    "augmentation": "finetunekit_register_augmentations",
}


def _plugin_name(plugin: Any) -> str:
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    if isinstance(plugin, type):
        return f"{plugin.__module__}.{plugin.__qualname__}"
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def register_plugin(pm: pluggy.PluginManager, plugin: Any) -> str:
    """Register one plugin: a module, a dotted module path, or an object with hookimpls.

    Returns the name it was registered under.

    Raises:
        PluginError: the module cannot be imported, is already registered, or implements
            a hook that does not exist or with arguments the hook does not have.
    """
    if isinstance(plugin, str):
        try:
            plugin = importlib.import_module(plugin)
        except Exception as exc:  # an import error inside the plugin is the plugin's fault
            raise PluginError(
                f"Could not import plugin module '{plugin}': {type(exc).__name__}: {exc}. "
                "Check the name is importable (python -c 'import NAME').",
                plugin=str(plugin),
            ) from exc
    if pm.is_registered(plugin):  # e.g. an installed entry point also given as --plugin
        return pm.get_name(plugin)
    name = _plugin_name(plugin)
    if pm.has_plugin(name):
        name = f"{name}#{id(plugin):x}"
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        hint = ""
        unknown = re.search(r"unknown hook '(\w+)'", str(exc))
        if unknown:
            known = [h for h in dir(hookspecs) if h.startswith("finetunekit_")]
            hint = did_you_mean(unknown.group(1), known)
        raise PluginError(
            f"Plugin '{name}' does not fit the hook contract: {exc}.{hint} "
            "See docs/plugins.md for every hook and its arguments.",
            plugin=name,
        ) from exc
    return name


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register each plugin of the ``finetunekit`` entry-point group under its name."""
    for entry_point in importlib.metadata.entry_points(group=PROJECT):
        if pm.has_plugin(entry_point.name) or pm.is_blocked(entry_point.name):
            continue
        dist = getattr(entry_point, "dist", None)
        source = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginError(
                f"Entry point '{entry_point.name}' ({entry_point.value}) from {source} failed "
                f"to load: {type(exc).__name__}: {exc}. Fix or uninstall that package.",
                plugin=entry_point.name,
            ) from exc
        try:
            pm.register(plugin, name=entry_point.name)
            pm.check_pending()
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(
                f"Plugin '{entry_point.name}' from {source} does not fit the hook contract: "
                f"{exc}. See docs/plugins.md.",
                plugin=entry_point.name,
            ) from exc


def get_plugin_manager(
    plugins: Iterable[Any] = (), *, builtins: bool = True, entry_points: bool = True
) -> pluggy.PluginManager:
    """Make a fresh plugin manager.

    Args:
        plugins: iterable. Extra plugins (modules, dotted module paths or objects),
            registered after the built-ins and the entry points.
        builtins: bool. Register the modules in ``finetunekit.plugins.BUILTINS``. Defaults to True.
        entry_points: bool. Load the ``finetunekit`` entry-point group. Defaults to True.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    if builtins:
        for dotted in importlib.import_module(BUILTINS_PACKAGE).BUILTINS:
            register_plugin(pm, dotted)
    if entry_points:
        _load_entry_points(pm)
    for plugin in plugins:
        register_plugin(pm, plugin)
    return pm


# -------------------------------------------------------------------------
# catalogue: every named component, and who contributed it
# -------------------------------------------------------------------------


def _code_of(fn: Any) -> Any:
    fn = getattr(fn, "__func__", fn)
    while hasattr(fn, "func"):  # functools.partial
        fn = fn.func
    return getattr(fn, "__code__", None)


class Catalogue:
    """Every component each plugin registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager):
        self._entries: dict[str, dict[str, tuple[Any, str]]] = {k: {} for k in COMPONENT_KINDS}
        self.code_owners: dict[Any, str] = {}
        for kind, hook_name in CATALOGUE_HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # registration order: built-ins first
                self._collect(kind, hook_name, impl)

    def _collect(self, kind: str, hook_name: str, impl: Any) -> None:
        plugin = impl.plugin_name
        if impl.wrapper or impl.hookwrapper:
            raise PluginError(
                f"Plugin '{plugin}' implements catalogue hook '{hook_name}' as a wrapper; "
                "catalogue hooks take plain implementations.",
                plugin=plugin,
                hook=hook_name,
            )
        expected = COMPONENT_KINDS[kind]

        def register(component: Any) -> None:
            if not isinstance(component, expected):
                raise PluginError(
                    f"Plugin '{plugin}' passed {type(component).__name__} to register() in "
                    f"'{hook_name}'; expected finetunekit.{expected.__name__}.",
                    plugin=plugin,
                    hook=hook_name,
                )
            name = component.name
            if not isinstance(name, str) or not name or name != name.strip():
                raise PluginError(
                    f"Plugin '{plugin}' registered a {kind} with an invalid name {name!r} in "
                    f"'{hook_name}'; names are non-empty strings.",
                    plugin=plugin,
                    hook=hook_name,
                )
            if name in self._entries[kind]:
                other = self._entries[kind][name][1]
                raise PluginError(
                    f"Duplicate {kind} name '{name}': plugin '{plugin}' registers it in "
                    f"'{hook_name}', but plugin '{other}' already did. Rename one, or leave "
                    "one plugin out.",
                    plugin=plugin,
                    hook=hook_name,
                )
            self._entries[kind][name] = (component, plugin)
            for value in vars(component).values():
                code = _code_of(value) if callable(value) else None
                if code is not None:
                    self.code_owners[code] = plugin

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except FinetunekitError:
            raise
        except Exception as exc:
            raise PluginError(
                f"Plugin '{plugin}' failed in hook '{hook_name}': {type(exc).__name__}: {exc}",
                plugin=plugin,
                hook=hook_name,
            ) from exc

    def get(self, kind: str, name: str, *, key: str | None = None) -> Any:
        """Return the component of `kind` called `name`.

        Raises:
            UnknownComponentError: no plugin registered that name; the message lists the
                known names and the closest match.
        """
        entries = self._entries[kind]
        if name not in entries:
            where = f" ({key})" if key else ""
            raise UnknownComponentError(
                unknown_name_message(f"{kind}{where}", name, entries)
                + f" Run 'finetunekit list' to see every {kind}; a plugin may add more."
            )
        return entries[name][0]

    def plugin_of(self, kind: str, name: str) -> str:
        """Name of the plugin that registered a component."""
        return self._entries[kind][name][1]

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def __iter__(self) -> Iterator[tuple[str, str, Any, str]]:
        """Yield ``(kind, name, component, plugin)`` for every component."""
        for kind, entries in self._entries.items():
            for name in sorted(entries):
                component, plugin = entries[name]
                yield kind, name, component, plugin


# -------------------------------------------------------------------------
# calling action hooks with blame
# -------------------------------------------------------------------------


def _blame(hook: Any, tb: Any, code_owners: dict[Any, str]) -> str | None:
    owners = dict(code_owners)
    for impl in hook.get_hookimpls():
        code = _code_of(impl.function)
        if code is not None:
            owners[code] = impl.plugin_name
    blamed = None
    while tb is not None:  # outermost to innermost; the innermost match wins
        owner = owners.get(tb.tb_frame.f_code)
        if owner is not None:
            blamed = owner
        tb = tb.tb_next
    return blamed


def call_hook(pm: pluggy.PluginManager, name: str, code_owners: dict[Any, str], **kwargs: Any) -> Any:
    """Call hook `name`; turn an unexpected exception into a :class:`PluginError`.

    Errors finetunekit raises on purpose (:class:`FinetunekitError`) pass through
    unchanged: they already say what to fix.
    """
    hook = getattr(pm.hook, name)
    try:
        return hook(**kwargs)
    except FinetunekitError:
        raise
    except Exception as exc:
        plugin = _blame(hook, exc.__traceback__, code_owners) or "unknown"
        raise PluginError(
            f"Plugin '{plugin}' failed in hook '{name}': {type(exc).__name__}: {exc}",
            plugin=plugin,
            hook=name,
        ) from exc


def require_result(pm: pluggy.PluginManager, name: str, result: Any,
                   what: Callable[[Any], bool], expected: str) -> Any:
    """Check an action hook's result; a missing or wrong one breaks the contract.

    The message lists the plugins implementing the hook (the culprit is among them).
    """
    if result is None or not what(result):
        plugins = [impl.plugin_name for impl in getattr(pm.hook, name).get_hookimpls()]
        raise PluginError(
            f"Hook '{name}' returned {type(result).__name__}; expected {expected}. "
            f"Implemented by: {', '.join(reversed(plugins))}. A plugin answering it must "
            "return that (or None to let the next one answer).",
            hook=name,
        )
    return result
