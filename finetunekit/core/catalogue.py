"""The catalogue: every component the plugins registered, who registered it, and the one
way the engine uses a component.

A plugin contributes components through its catalogue hooks
(``finetunekit_register_strategies(register)``, ...). ``register`` checks each one when it
arrives, naming the plugin: the right dataclass, a unique name, declared keys that the
component's functions accept, defaults that fit their own types, no key the engine owns.

The engine then calls a component's functions only through :meth:`Catalogue.call`, which
knows the plugin that registered it, so an error inside one names that plugin without
reading tracebacks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pluggy

from finetunekit.core.components import COMPONENT_KINDS
from finetunekit.core.errors import (
    FinetunekitError,
    PluginError,
    RecipeError,
    UnknownComponentError,
    environment_error,
    unknown_name_message,
)
from finetunekit.core.distribution import check_distribution
from finetunekit.core.params import validate_section, validate_value
from finetunekit.core.recipe import COMPONENT_KIND, CORE_KEYS, NAME_KEYS, Recipe

CATALOGUE_HOOKS: dict[str, str] = {
    "backbone": "finetunekit_register_backbones",
    "strategy": "finetunekit_register_strategies",
    "head": "finetunekit_register_heads",
    "optimizer": "finetunekit_register_optimizers",
    "format": "finetunekit_register_formats",
    "data": "finetunekit_register_data_sources",
    "augmentation": "finetunekit_register_augmentations",
    "observer": "finetunekit_register_observers",
}
"""Component kind -> the hook that contributes it."""

SECTION_OF: dict[str, str] = {kind: section for section, kind in COMPONENT_KIND.items()}
"""Component kind -> the recipe section that selects it."""

KEYED_FUNCTIONS: dict[str, dict[str, int]] = {
    "backbone": {"build": 2},
    "strategy": {"plan": 1},
    "head": {"build": 1},
    "optimizer": {"build": 2},
    "data": {"load": 1},
    "augmentation": {"build": 1, "mix": 5},
}
"""Per kind, the functions that receive the component's recipe keys as keyword
arguments, with the number of positional arguments the engine passes before them."""

ENGINE_KEYWORDS: dict[str, dict[str, frozenset[str]]] = {
    "optimizer": {"build": frozenset({"steps"})},
}
"""Per kind and function, keyword arguments the engine passes itself when the function
names them (``Optimizer.build(..., steps=Steps)``): not recipe keys, and no component may
declare a key of that name."""


def takes_keyword(fn: Callable, name: str) -> bool:
    """Whether `fn` has a parameter called `name` (not merely ``**kwargs``)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _accepts(fn: Callable, positional: int, keys: set[str],
             engine: frozenset[str] = frozenset()) -> str | None:
    """Why `fn` cannot be called with `positional` arguments and `keys` (and the
    `engine` keywords it names), or None."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: cannot tell
        return None
    params = list(signature.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        params = [p for p in params if p.kind is not p.VAR_POSITIONAL]
        positional = 0
    named = params[positional:]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in named)
    names = {p.name for p in named if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    problems = []
    if not takes_any and keys - names:
        problems.append(f"does not accept declared key(s) {sorted(keys - names)}")
    needed = {p.name for p in named if p.default is p.empty and p.name not in engine
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if needed - keys:
        problems.append(f"needs argument(s) {sorted(needed - keys)} that are not declared keys")
    return "; ".join(problems) or None


class Catalogue:
    """Every component each plugin registered, by kind and name.

    Args:
        pm: the ``pluggy.PluginManager`` whose catalogue hooks are asked, in registration
            order (built-ins first).
    """

    def __init__(self, pm: pluggy.PluginManager):
        self._entries: dict[str, dict[str, tuple[Any, str]]] = {k: {} for k in COMPONENT_KINDS}
        for kind, hook_name in CATALOGUE_HOOKS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                self._collect(kind, hook_name, impl)

    # -- registration ----------------------------------------------------------

    def _collect(self, kind: str, hook_name: str, impl: Any) -> None:
        plugin = impl.plugin_name
        if impl.wrapper or impl.hookwrapper:
            raise PluginError(
                f"Plugin '{plugin}' implements catalogue hook '{hook_name}' as a wrapper; "
                "catalogue hooks take plain implementations.", plugin=plugin, hook=hook_name)

        def register(component: Any) -> None:
            self._check(kind, component, plugin, hook_name)
            self._entries[kind][component.name] = (component, plugin)

        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except FinetunekitError:
            raise
        except Exception as exc:
            raise PluginError(
                f"Plugin '{plugin}' failed in hook '{hook_name}': {type(exc).__name__}: {exc}",
                plugin=plugin, hook=hook_name) from exc

    def _check(self, kind: str, component: Any, plugin: str, hook_name: str) -> None:
        """Refuse a component that could only fail later, naming the plugin."""
        def fail(problem: str) -> None:
            raise PluginError(f"Plugin '{plugin}' registered {problem} (in '{hook_name}').",
                              plugin=plugin, hook=hook_name)

        expected = COMPONENT_KINDS[kind]
        if not isinstance(component, expected):
            fail(f"a {type(component).__name__}; register() takes finetunekit.{expected.__name__}")
        name = component.name
        if not isinstance(name, str) or not name or name != name.strip():
            fail(f"a {kind} with an invalid name {name!r}; names are non-empty strings")
        if name in self._entries[kind]:
            other = self._entries[kind][name][1]
            raise PluginError(
                f"Duplicate {kind} name '{name}': plugin '{plugin}' registers it in "
                f"'{hook_name}', but plugin '{other}' already did. Rename one, or leave one "
                "plugin out.", plugin=plugin, hook=hook_name)
        section = SECTION_OF.get(kind) or component.section
        if kind == "observer":
            owner = self._observer_sections().get(section)
            if not isinstance(section, str) or not section.isidentifier() or section in CORE_KEYS:
                fail(f"observer '{name}' with section {section!r}; a section is a name that "
                     f"is not an engine section ({', '.join(CORE_KEYS)})")
            if owner is not None:
                fail(f"observer '{name}' with section [{section}], which observer "
                     f"'{owner}' already owns")
        params = dict(getattr(component, "params", {}) or {})
        clash = sorted(set(params) & set(CORE_KEYS.get(section, {})))
        if clash:
            fail(f"{kind} '{name}' declaring keys the engine owns in [{section}]: {clash}. "
                 "Rename them")
        for key, param in params.items():
            if param.required or (param.default is None and param.nullable):
                continue
            try:
                validate_value(f"{section}.{key}", param.default, param)
            except RecipeError as exc:
                fail(f"{kind} '{name}' whose key '{key}' has a default that does not fit "
                     f"its own declaration: {exc}")
        for attr, positional in KEYED_FUNCTIONS.get(kind, {}).items():
            engine = ENGINE_KEYWORDS.get(kind, {}).get(attr, frozenset())
            if set(params) & engine:
                fail(f"{kind} '{name}' declaring key(s) {sorted(set(params) & engine)}, which "
                     f"the engine passes to {attr}() itself. Rename them")
            fn = getattr(component, attr, None)
            problem = _accepts(fn, positional, set(params), engine) if callable(fn) else None
            if problem:
                fail(f"{kind} '{name}' whose {attr}() {problem}. Declare every keyword "
                     f"argument of {attr}() as a Param, and accept every declared key")

    # -- lookup ------------------------------------------------------------------

    def get(self, kind: str, name: str, *, key: str | None = None) -> Any:
        """The component of `kind` called `name`.

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
                " A plugin's hook functions need the @finetunekit.hookimpl marker to be seen.")
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

    def rows(self) -> list[dict[str, Any]]:
        """Every component as a dict for ``finetunekit list``: kind, name, plugin,
        description and its declared keys."""
        return [{
            "kind": kind, "name": name, "plugin": plugin, "description": component.description,
            "params": {key: {"type": p.describe_type(), "default": None if p.required else p.default,
                             "required": p.required, "help": p.help}
                       for key, p in (getattr(component, "params", {}) or {}).items()},
        } for kind, name, component, plugin in self]

    def _observer_sections(self) -> dict[str, str]:
        """Section -> the observer that owns it."""
        return {component.section: name
                for name, (component, _) in self._entries["observer"].items()}

    def observers(self) -> list[Any]:
        """Every registered :class:`~finetunekit.Observer`, by name."""
        return [self._entries["observer"][name][0] for name in self.names("observer")]

    # -- use -----------------------------------------------------------------------

    def settings(self, recipe: Recipe) -> dict[str, dict[str, Any]]:
        """The validated keys of each lifecycle plugin's section the recipe has.

        Raises:
            RecipeError: a section no engine key and no registered observer declares
                (with the known sections and the closest match), or a bad key in one.
        """
        owners = self._observer_sections()
        result = {}
        for section in recipe.plugin_sections():
            if section not in owners:
                known = [*CORE_KEYS, *sorted(owners)]
                raise RecipeError(
                    unknown_name_message("recipe section", section, known)
                    + " A lifecycle plugin declares its section with an Observer "
                    "(finetunekit list shows them); is the plugin registered?")
            observer = self.get("observer", owners[section])
            result[section] = validate_section(section, dict(observer.params), recipe[section],
                                               owner=f"observer '{observer.name}'")
        return result

    def select(self, recipe: Recipe, section: str) -> tuple[Any, dict[str, Any]]:
        """The component a recipe section names, and its validated own keys."""
        kind, name_key = COMPONENT_KIND[section], NAME_KEYS[section]
        name = recipe[section][name_key]
        component = self.get(kind, name, key=f"{section}.{name_key}")
        schema = dict(getattr(component, "params", {}) or {})
        extras = recipe.extras(section)
        unknown = set(extras) - set(schema)
        if unknown:  # the message lists every key the section accepts
            validate_section(section, {**dict.fromkeys(CORE_KEYS[section]), **schema},
                             dict.fromkeys(unknown), owner=f"{kind} '{name}'")
        return component, validate_section(section, schema, extras, owner=f"{kind} '{name}'")

    def validate(self, recipe: Recipe, *, data: bool = True) -> None:
        """Check every component name and key a recipe uses, without building anything.

        Args:
            recipe: the :class:`~finetunekit.Recipe`.
            data: bool. Check ``[data]`` too; False when data comes from Python.
        """
        for section in NAME_KEYS:
            if data or section != "data":
                self.select(recipe, section)
        self.settings(recipe)
        check_distribution(recipe["train"]["distribution"])

    def call(self, kind: str, component: Any, attr: str, *args: Any,
             params: dict[str, Any] | None = None,
             expect: tuple[Callable[[Any], bool], str] | None = None) -> Any:
        """Call ``component.<attr>(*args, **params)``; blame its plugin if it breaks.

        Errors finetunekit raises on purpose (a strategy's RecipeError naming its key)
        pass through unchanged: they already say what to fix.

        Args:
            kind: str. The component's kind, e.g. ``"strategy"``.
            component: the registered component.
            attr: str. The function to call, e.g. ``"plan"``.
            params: dict or None. The component's validated recipe keys.
            expect: ``(predicate, description)`` or None. The result must satisfy the
                predicate, else a PluginError says what was expected.
        """
        plugin = self.plugin_of(kind, component.name)
        where = f"{kind.capitalize()} '{component.name}' (plugin '{plugin}')"
        try:
            result = getattr(component, attr)(*args, **(params or {}))
        except FinetunekitError:
            raise
        except Exception as exc:
            # a full disk or a lack of memory is the machine's state, not the plugin's fault
            cause = environment_error(exc, f"{where[0].lower()}{where[1:]} ran {attr}()")
            if cause is not None:
                raise cause from exc
            raise PluginError(f"{where} failed in {attr}(): {type(exc).__name__}: {exc}",
                              plugin=plugin, hook=f"{kind}.{attr}") from exc
        if expect is not None and not expect[0](result):
            raise PluginError(
                f"{where}: {attr}() returned {type(result).__name__}; expected {expect[1]}.",
                plugin=plugin, hook=f"{kind}.{attr}")
        return result
