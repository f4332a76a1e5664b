"""Declared parameters: how a component says which recipe keys it takes.

A component (backbone, strategy, head, ...) lists its keys as :class:`Param` objects;
:func:`validate_section` checks a recipe section against them, fills defaults and
raises :class:`~finetunekit.core.errors.RecipeError` naming the offending key. The same
machinery validates the engine's own keys, so a third-party component's parameters are
checked exactly like a built-in's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from finetunekit.core.errors import RecipeError, did_you_mean, unknown_name_message


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Marker default for a key the recipe must give."""

_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
               list: "a list", dict: "a table"}
_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "booleans", list: "lists"}


@dataclass(frozen=True)
class Param:
    """One recipe key a component accepts.

    Args:
        type: type or tuple of types. Accepted Python types of the value (`int`, `float`,
            `str`, `bool`, `list`). `float` also accepts integers; `int` never accepts booleans.
        default: any. Value used when the recipe omits the key. Defaults to `REQUIRED`.
        help: str. One line shown by `finetunekit list` and in error messages.
        choices: tuple or None. If given, the value must be one of these.
        min: number or None. Inclusive lower bound for numbers (and list items).
        max: number or None. Inclusive upper bound for numbers (and list items).
        items: type or None. Type of each element when `type` is `list`.
        length: int or None. Exact length when `type` is `list`.
        check: callable or None. `check(value)` returns an error string, or None if fine.
        nullable: bool. Whether `None` (omitted in TOML) is a valid explicit value.
        keys: mapping of str to Param, or None. For a `dict` value (a TOML sub-table such
            as ``[train.early_stopping]``): its own keys, validated and filled with their
            defaults like a section's.
    """

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    items: type | None = None
    length: int | None = None
    check: Callable[[Any], str | None] | None = None
    nullable: bool = False
    keys: Mapping[str, Param] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe_type(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        text = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
        if list in types and self.items is not None:
            text += f" of {_PLURALS.get(self.items, self.items.__name__)}"
        if self.length is not None:
            text += f" of length {self.length}"
        return text


def _is_instance(value: Any, typ: type) -> bool:
    if isinstance(value, bool):
        return typ is bool
    if typ is float:
        return isinstance(value, (int, float))
    return isinstance(value, typ)


def _check_bounds(key: str, value: Any, param: Param) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(f"'{key}' must be a finite number. Received: {key}={value!r}.")
    if param.min is not None and value < param.min:
        raise RecipeError(f"'{key}' must be >= {param.min}. Received: {key}={value!r}.")
    if param.max is not None and value > param.max:
        raise RecipeError(f"'{key}' must be <= {param.max}. Received: {key}={value!r}.")


def validate_value(key: str, value: Any, param: Param) -> Any:
    """Check one value against its :class:`Param`; return it (floats normalised)."""
    if value is None and param.nullable:
        return None
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    if not any(_is_instance(value, t) for t in types):
        raise RecipeError(
            f"'{key}' must be {param.describe_type()}. Received: {key}={value!r} "
            f"({type(value).__name__})."
        )
    if isinstance(value, list):
        if param.length is not None and len(value) != param.length:
            raise RecipeError(
                f"'{key}' must have {param.length} items. Received: {key}={value!r}."
            )
        if param.items is not None:
            for item in value:
                if not _is_instance(item, param.items):
                    raise RecipeError(
                        f"Every item of '{key}' must be "
                        f"{_TYPE_NAMES.get(param.items, param.items.__name__)}. "
                        f"Received: {key}={value!r}."
                    )
                _check_bounds(key, item, param)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(key, value, param)
        if float in types and int not in types:
            value = float(value)
    elif isinstance(value, dict) and param.keys is not None:
        value = validate_section(key, param.keys, value)
    if param.choices is not None and value not in param.choices:
        raise RecipeError(
            unknown_name_message(f"value for '{key}'", value, [str(c) for c in param.choices])
        )
    if param.check is not None:
        problem = param.check(value)
        if problem:
            raise RecipeError(f"'{key}': {problem} Received: {key}={value!r}.")
    return value


def validate_section(
    section: str, schema: Mapping[str, Param], values: Mapping[str, Any], *, owner: str = ""
) -> dict[str, Any]:
    """Validate `values` (one recipe section) against `schema`; return them with defaults.

    Args:
        section: str. Section name used in messages, e.g. ``"strategy"``.
        schema: mapping of key to :class:`Param`.
        values: mapping. The keys the recipe gave.
        owner: str. Who declares the keys (``"strategy 'partial'"``), for messages.

    Raises:
        RecipeError: an unknown key (with did-you-mean and the known keys), a missing
            required key, or a value of the wrong type or out of range.
    """
    for key in values:
        if key not in schema:
            where = f" for {owner}" if owner else ""
            raise RecipeError(
                f"Unknown key '{section}.{key}'{where}. Known: {', '.join(sorted(schema))}."
                f"{did_you_mean(key, schema)}"
            )
    result: dict[str, Any] = {}
    for key, param in schema.items():
        full = f"{section}.{key}"
        if key in values:
            result[key] = validate_value(full, values[key], param)
        elif param.required:
            raise RecipeError(
                f"'{full}' is required ({param.describe_type()}{': ' + param.help if param.help else ''}). "
                f"Add it to [{section}] in the recipe or pass --set {full}=VALUE."
            )
        else:
            result[key] = param.default
    return result
