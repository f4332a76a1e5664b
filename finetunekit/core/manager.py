"""The plugin manager: built-ins, entry points and explicit plugins, one per engine.

There is no module-level manager. :func:`get_plugin_manager` makes a fresh one each time,
so two engines in one process never see each other's plugins. Built-in plugins are
registered exactly like third-party ones.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import types
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from finetunekit.core import hookspecs
from finetunekit.core.errors import FinetunekitError, PluginError, did_you_mean, environment_error

PROJECT = "finetunekit"

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marker for hook implementations: ``@finetunekit.hookimpl``."""

BUILTINS_PACKAGE = "finetunekit.plugins"
"""The package whose ``BUILTINS`` tuple names the built-in plugin modules. The engine
knows it by name only, as it knows the entry-point group, and registers each module
through :func:`register_plugin`, the same path as ``--plugin MODULE``."""

REMOVED_HOOKS: dict[str, str] = {
    "finetunekit_load_backbone": "Backbone(build=...)",
    "finetunekit_plan_strategy": "Strategy(plan=...)",
    "finetunekit_build_head": "Head(build=...)",
    "finetunekit_build_optimizer": "Optimizer(build=...)",
    "finetunekit_save_model": "Format(save=...), or finetunekit_export_model to change the model saved",
    "finetunekit_load_model": "Format(load=...)",
    "finetunekit_load_data": "DataSource(load=...)",
    "finetunekit_build_augmentation": "Augmentation(build=...)",
}
"""Action hooks of finetunekit 0.1, and what does their work now."""


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
        except BaseException as exc:  # the plugin's fault; SystemExit too, as for entry points
            if isinstance(exc, KeyboardInterrupt):
                raise
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
    _register_checked(pm, plugin, name, f"'{name}'")
    return name


def _register_checked(pm: pluggy.PluginManager, plugin: Any, name: str, who: str) -> None:
    """Register `plugin`; a hook that does not exist or does not fit is a PluginError."""
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        hint = ""
        unknown = re.search(r"unknown hook '(\w+)'", str(exc))
        if unknown and unknown.group(1) in REMOVED_HOOKS:
            hint = (f" '{unknown.group(1)}' was removed in finetunekit 0.2: register a component "
                    f"instead, {REMOVED_HOOKS[unknown.group(1)]} (CHANGELOG.md has the migration).")
        elif unknown:
            known = [h for h in dir(hookspecs) if h.startswith("finetunekit_")]
            hint = did_you_mean(unknown.group(1), known)
        raise PluginError(
            f"Plugin {who} does not fit the hook contract: {exc}.{hint} "
            "See docs/plugins.md for every hook and its arguments.",
            plugin=name,
        ) from exc


SKIP_HINT = ("Skip it with FINETUNEKIT_DISABLE_PLUGINS={name} (a comma-separated list), or "
             "every installed plugin with FINETUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1.")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register each plugin of the ``finetunekit`` entry-point group under its name."""
    for entry_point in importlib.metadata.entry_points(group=PROJECT):
        if pm.has_plugin(entry_point.name) or pm.is_blocked(entry_point.name):
            continue
        dist = getattr(entry_point, "dist", None)
        source = f"{dist.name} {dist.version}" if dist is not None else "an installed package"
        skip = SKIP_HINT.format(name=entry_point.name)
        try:
            plugin = entry_point.load()
        except BaseException as exc:  # SystemExit too: a plugin must not end the program
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise PluginError(
                f"Entry point '{entry_point.name}' ({entry_point.value}) from {source} failed "
                f"to load: {type(exc).__name__}: {exc}. Fix or uninstall that package. {skip}",
                plugin=entry_point.name,
            ) from exc
        try:
            _register_checked(pm, plugin, entry_point.name, f"'{entry_point.name}' from {source}")
        except PluginError as exc:
            raise PluginError(f"{exc} {skip}", plugin=entry_point.name) from exc


def get_plugin_manager(
    plugins: Iterable[Any] = (), *, builtins: bool = True, entry_points: bool = True
) -> pluggy.PluginManager:
    """Make a fresh plugin manager.

    Args:
        plugins: iterable. Extra plugins (modules, dotted module paths or objects),
            registered after the built-ins and the entry points.
        builtins: bool. Register the modules in ``finetunekit.plugins.BUILTINS``. Defaults to True.
        entry_points: bool. Load the ``finetunekit`` entry-point group. Defaults to True;
            ``FINETUNEKIT_DISABLE_PLUGIN_AUTOLOAD=1`` in the environment turns it off.
            ``FINETUNEKIT_DISABLE_PLUGINS=a,b`` blocks the plugins registered under those
            names (an entry point's name, or a module's dotted path).
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in os.environ.get("FINETUNEKIT_DISABLE_PLUGINS", "").split(","):
        if name.strip():
            pm.set_blocked(name.strip())
    if os.environ.get("FINETUNEKIT_DISABLE_PLUGIN_AUTOLOAD", "").strip() not in ("", "0"):
        entry_points = False
    if builtins:
        for dotted in importlib.import_module(BUILTINS_PACKAGE).BUILTINS:
            register_plugin(pm, dotted)
    if entry_points:
        _load_entry_points(pm)
    for plugin in plugins:
        register_plugin(pm, plugin)
    return pm


# -------------------------------------------------------------------------
# calling hooks with blame
# -------------------------------------------------------------------------


def _blame(hook: Any, tb: Any) -> str | None:
    """The plugin whose hook implementation raised: the innermost traceback frame that
    runs one of the hook's implementations."""
    owners = {getattr(impl.function, "__code__", None): impl.plugin_name
              for impl in hook.get_hookimpls()}
    blamed = None
    while tb is not None:
        blamed = owners.get(tb.tb_frame.f_code, blamed)
        tb = tb.tb_next
    return blamed


def call_hook(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> Any:
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
        plugin = _blame(hook, exc.__traceback__) or "unknown"
        # a full disk or a lack of memory is the machine's state, not the plugin's fault
        cause = environment_error(exc, f"plugin '{plugin}' ran hook '{name}'")
        if cause is not None:
            raise cause from exc
        raise PluginError(
            f"Plugin '{plugin}' failed in hook '{name}': {type(exc).__name__}: {exc}",
            plugin=plugin,
            hook=name,
        ) from exc


def require_result(pm: pluggy.PluginManager, name: str, result: Any,
                   what: Callable[[Any], bool], expected: str) -> Any:
    """Check a hook's result (``finetunekit_export_model``'s model); a missing or wrong
    one breaks the contract.

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
