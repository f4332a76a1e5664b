"""Recipes: a fine-tuning run described as TOML sections.

A :class:`Recipe` holds the engine's own keys (checked here) and each selected
component's keys (checked by the engine against the component's declared
:class:`~finetunekit.Param` objects, since only the plugin knows them).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

from finetunekit.core.errors import RecipeError, did_you_mean
from finetunekit.core.params import Param, validate_value


def _positive_dims(shape: list[int]) -> str | None:
    if shape[2] != 3:
        return "Images must have 3 channels (RGB); grayscale data is converted on load."
    return None


EARLY_STOPPING_KEYS: dict[str, Param] = {
    "monitor": Param(str, "val_loss", help="the logged metric to watch, e.g. val_loss, val_accuracy"),
    "patience": Param(int, 0, min=0, help="epochs without improvement before stopping"),
    "min_delta": Param(float, 0.0, min=0.0, help="smallest change that counts as an improvement"),
    "mode": Param(str, "auto", choices=("auto", "min", "max"),
                  help="min: lower is better; max: higher is better; auto: max for accuracy/auc"),
    "restore_best": Param(bool, False, help="end with the weights of the best epoch"),
}
"""Keys of the ``[train.early_stopping]`` sub-table (its presence turns early stopping on)."""

SCHEDULES = ("constant", "step", "exponential", "cosine", "one_cycle", "plateau")
"""The values of ``optimizer.schedule``."""

CORE_KEYS: dict[str, dict[str, Param]] = {
    "backbone": {
        "name": Param(str, help="backbone name, e.g. vgg16 (finetunekit list)"),
        "weights": Param(str, "imagenet", help='"imagenet", "none", or a path to a weights file'),
        "input_shape": Param(list, [224, 224, 3], items=int, length=3, min=1, check=_positive_dims,
                             help="[height, width, 3]"),
    },
    "strategy": {
        "name": Param(str, "feature_extraction", help="freezing policy (finetunekit list)"),
        "train_bn": Param(bool, False, help="train BatchNorm layers that the strategy unfreezes"),
    },
    "head": {
        "name": Param(str, "dense", help="head builder (finetunekit list)"),
    },
    "optimizer": {
        "name": Param(str, "adam", help="rmsprop, adam, adamw, sgd, ..."),
        "learning_rate": Param(float, 1e-4, min=0.0, help="peak learning rate"),
        "weight_decay": Param(float, None, min=0.0, nullable=True, help="decoupled weight decay"),
        "schedule": Param(str, "constant",
                          choices=SCHEDULES,
                          help="learning-rate schedule within each stage (docs/recipes.md)"),
        "warmup_epochs": Param(float, None, min=0.0, nullable=True,
                               help="cosine: linear warmup from 0 over this many epochs"),
        "warmup_steps": Param(int, None, min=0, nullable=True,
                              help="cosine: linear warmup from 0 over this many steps"),
        "min_learning_rate": Param(float, None, min=0.0, nullable=True,
                                   help="cosine, plateau: the lowest rate (default 0)"),
        "step_every_epochs": Param(int, None, min=1, nullable=True,
                                   help="step: multiply the rate by step_factor every N epochs (1)"),
        "step_factor": Param(float, None, min=0.0, max=1.0, nullable=True,
                             help="step: the factor (0.1)"),
        "decay_rate": Param(float, None, min=0.0, max=1.0, nullable=True,
                            help="exponential: the factor per epoch, applied smoothly (0.9)"),
        "pct_start": Param(float, None, min=0.0, max=1.0, nullable=True,
                           help="one_cycle: share of the stage spent warming up (0.25)"),
        "div_factor": Param(float, None, min=1.0, nullable=True,
                            help="one_cycle: the warmup starts at learning_rate / div_factor (25)"),
        "final_div_factor": Param(float, None, min=1.0, nullable=True,
                                  help="one_cycle: ends at the start rate / final_div_factor (1e4)"),
        "plateau_monitor": Param(str, None, nullable=True,
                                 help="plateau: the logged metric watched (val_loss)"),
        "plateau_factor": Param(float, None, min=0.0, max=1.0, nullable=True,
                                help="plateau: factor on the rate at a plateau (0.1)"),
        "plateau_patience": Param(int, None, min=0, nullable=True,
                                  help="plateau: epochs without improvement first (2)"),
        "carry_state": Param(bool, False,
                             help="keep the optimizer's moments and step count across stages"),
    },
    "data": {
        "source": Param(str, "folder", help="data source (finetunekit list)"),
        "batch_size": Param(int, 32, min=1),
    },
    "augment": {
        "name": Param(str, "none", help="random augmentation on training batches (finetunekit list)"),
    },
    "train": {
        "epochs": Param(int, 10, min=0, help="epochs (a strategy may split them into stages)"),
        "feature_cache": Param(str, "auto", choices=("auto", "off"),
                               help="train a frozen-base stage's head on cached features"),
        "seed": Param(int, 0, min=0, max=2**32 - 1, help="seeds Python, NumPy and the backend"),
        "precision": Param(str, "float32", choices=("float32", "mixed_float16", "mixed_bfloat16"),
                           help="Keras dtype policy of the model; the head's output stays float32"),
        "distribution": Param(str, "none",
                              choices=("none", "mirrored", "multi_worker", "data_parallel"),
                              help="data-parallel engine: mirrored, multi_worker (TensorFlow), "
                                   "data_parallel (JAX); data.batch_size is the global batch"),
        "early_stopping": Param(dict, None, nullable=True, keys=EARLY_STOPPING_KEYS,
                                help="[train.early_stopping] table: stop when `monitor` stops "
                                     "improving"),
    },
    "save": {
        "path": Param(str, None, nullable=True, help="run folder; omit to keep the model in memory"),
        "format": Param(str, "keras", help="persistence format (finetunekit list)"),
        "overwrite": Param(bool, False, help="replace an existing run folder"),
        "keep_checkpoints": Param(int, 2, min=0,
                                  help="epoch checkpoints kept in <path>/checkpoints (0: none)"),
        "checkpoint_every": Param(int, 1, min=1,
                                  help="write an epoch checkpoint every N epochs (and at the "
                                       "run's last epoch or stop); resume replays the rest"),
    },
}
"""The engine's own keys per section. Components add their own keys to their section."""

SCHEDULE_KEYS: dict[str, dict[str, Any]] = {
    "constant": {},
    "step": {"step_every_epochs": 1, "step_factor": 0.1},
    "exponential": {"decay_rate": 0.9},
    "cosine": {"warmup_epochs": None, "warmup_steps": None, "min_learning_rate": 0.0},
    "one_cycle": {"pct_start": 0.25, "div_factor": 25.0, "final_div_factor": 1e4},
    "plateau": {"plateau_monitor": "val_loss", "plateau_factor": 0.1, "plateau_patience": 2,
                "min_learning_rate": 0.0},
}
"""Per schedule, the ``[optimizer]`` keys it reads and their defaults
(:mod:`finetunekit.core.schedules` builds them)."""


def check_schedule_keys(section: Mapping[str, Any]) -> None:
    """Refuse a schedule key set for another schedule, and contradictions.

    Raises:
        RecipeError: naming the key, the schedule it belongs to and the fix.
    """
    schedule = section.get("schedule", "constant")
    own = SCHEDULE_KEYS.get(schedule, {})
    for keys in SCHEDULE_KEYS.values():
        for key in keys:
            if key in own or section.get(key) is None:
                continue
            users = [s for s, k in SCHEDULE_KEYS.items() if key in k]
            raise RecipeError(
                f"'optimizer.{key}' belongs to schedule {' or '.join(map(repr, users))}, but "
                f"optimizer.schedule = {schedule!r}. Received: optimizer.{key}="
                f"{section[key]!r}. Remove it, or set optimizer.schedule = \"{users[0]}\"."
                + (f" Schedule {schedule!r} reads: {', '.join(own)}." if own else ""))
    if section.get("warmup_epochs") is not None and section.get("warmup_steps") is not None:
        raise RecipeError(
            "Give 'optimizer.warmup_epochs' or 'optimizer.warmup_steps', not both. Received: "
            f"warmup_epochs={section['warmup_epochs']!r}, warmup_steps={section['warmup_steps']!r}.")
    if section.get("carry_state") and schedule not in ("constant", "plateau"):
        raise RecipeError(
            "optimizer.carry_state = true keeps the optimizer's step count across stages, "
            "which a per-stage schedule would read as its own position. Received: "
            f"optimizer.schedule = {schedule!r}. Use schedule \"constant\" or \"plateau\" "
            "with carry_state, or carry_state = false.")


NAME_KEYS = {"backbone": "name", "strategy": "name", "head": "name", "optimizer": "name",
             "data": "source", "save": "format", "augment": "name"}
"""For each section, the key that selects a component."""

COMPONENT_KIND = {"backbone": "backbone", "strategy": "strategy", "head": "head",
                  "optimizer": "optimizer", "data": "data", "save": "format",
                  "augment": "augmentation"}


class Recipe:
    """A validated, immutable set of recipe sections.

    Build one with :meth:`from_toml`, :meth:`from_dict` or :meth:`from_string`;
    :meth:`with_overrides` returns a changed copy.

    Example:

    >>> r = Recipe.from_dict({"backbone": {"name": "vgg16", "weights": "none"},
    ...                       "head": {"classes": 1}})
    >>> r["strategy"]["name"]
    'feature_extraction'
    """

    def __init__(self, sections: Mapping[str, Mapping[str, Any]], *, source: str | None = None):
        self._sections = self._validate(sections)
        self.source = source

    # -- construction ------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Recipe:
        """Build a recipe from nested dicts (``{"backbone": {"name": "vgg16"}, ...}``)."""
        if not isinstance(data, Mapping):
            raise RecipeError(f"A recipe must be a mapping of sections. Received: {type(data).__name__}.")
        return cls(data, source=source)

    @classmethod
    def from_string(cls, text: str, *, source: str | None = None) -> Recipe:
        """Parse TOML text."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            where = f"{source}: " if source else ""
            raise RecipeError(f"{where}not valid TOML: {exc}.") from exc
        return cls.from_dict(data, source=source)

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        """Read a TOML recipe file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecipeError(f"Recipe file not found: '{path}'. Check the path.") from None
        except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
            raise RecipeError(f"Cannot read recipe '{path}': {exc}. Expected a UTF-8 TOML file.") from exc
        return cls.from_string(text, source=str(path))

    # -- validation ----------------------------------------------------------

    @staticmethod
    def _validate(sections: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for name, body in sections.items():
            if name not in CORE_KEYS:
                check_plugin_section(name)
            if not isinstance(body, Mapping):
                raise RecipeError(
                    f"[{name}] must be a table of keys. Received: {name}={body!r}."
                )
            if name not in CORE_KEYS:  # a lifecycle plugin's: the engine checks its keys
                result[name] = dict(copy.deepcopy(body))
        if "backbone" not in sections or "name" not in sections["backbone"]:
            raise RecipeError(
                "'backbone.name' is required: add [backbone] name = \"vgg16\" (finetunekit list "
                "shows every backbone)."
            )
        for name, schema in CORE_KEYS.items():
            body = dict(copy.deepcopy(sections.get(name, {})))
            unknown = sorted(set(body) - set(schema)) if name not in NAME_KEYS else []
            if unknown:  # a section without a component: every key is the engine's
                raise RecipeError(
                    f"Unknown key '{name}.{unknown[0]}'. Known: {', '.join(sorted(schema))}."
                    f"{did_you_mean(unknown[0], schema)}")
            for key, param in schema.items():
                full = f"{name}.{key}"
                if key in body:
                    body[key] = validate_value(full, body[key], param)
                elif param.required:
                    raise RecipeError(f"'{full}' is required ({param.describe_type()}).")
                else:
                    body[key] = copy.deepcopy(param.default)
            result[name] = body
        check_schedule_keys(result["optimizer"])
        return result

    # -- access --------------------------------------------------------------

    def __getitem__(self, section: str) -> dict[str, Any]:
        """A copy of one section, defaults filled in."""
        if section not in self._sections:
            raise KeyError(section)
        return copy.deepcopy(self._sections[section])

    def core(self, section: str) -> dict[str, Any]:
        """The engine's own keys of a section."""
        return {k: v for k, v in self[section].items() if k in CORE_KEYS.get(section, {})}

    def extras(self, section: str) -> dict[str, Any]:
        """The keys of a section that belong to the selected component (all the keys of a
        lifecycle plugin's section)."""
        return {k: v for k, v in self[section].items() if k not in CORE_KEYS.get(section, {})}

    def plugin_sections(self) -> list[str]:
        """The sections that are not the engine's: lifecycle plugins' (``[Observer.section]``),
        which :meth:`finetunekit.Engine.validate` checks against the registered plugins."""
        return [name for name in self._sections if name not in CORE_KEYS]

    def __contains__(self, section: object) -> bool:
        return section in self._sections

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Every section as plain dicts (a deep copy); ``None`` values left out."""
        return {
            name: {k: v for k, v in body.items() if v is not None}
            for name, body in copy.deepcopy(self._sections).items()
        }

    def to_toml(self) -> str:
        """The recipe as TOML text that :meth:`from_string` reads back to an equal recipe."""
        return tomli_w.dumps(self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recipe) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        b = self._sections["backbone"]
        return f"Recipe(backbone={b['name']!r}, strategy={self._sections['strategy']['name']!r})"

    # -- changes ---------------------------------------------------------------

    def with_overrides(self, assignments: Iterable[str] | Mapping[str, Any]) -> Recipe:
        """Return a copy with ``section.key=value`` assignments applied.

        Values are parsed as TOML (``2e-5``, ``[256]``, ``true``); anything that is not
        valid TOML is taken as a string, so ``strategy.name=full`` needs no quotes.
        Selecting another component (``strategy.name=full``) drops the previous
        component's own keys from that section, unless they are assigned too.
        """
        data = copy.deepcopy(self._sections)
        items = list(assignments.items() if isinstance(assignments, Mapping)
                     else map(parse_assignment, assignments))
        for dotted, value in items:
            # a new component in a section: the old one's own keys no longer apply
            section, _, key = dotted.partition(".")
            if NAME_KEYS.get(section) == key and data.get(section, {}).get(key) != value:
                given = {d.partition(".")[2] for d, _ in items if d.partition(".")[0] == section}
                data[section] = {k: v for k, v in data[section].items()
                                 if k in CORE_KEYS[section] or k in given}
        for dotted, value in items:
            section, _, key = dotted.partition(".")
            if not key or "." in key:
                raise RecipeError(
                    f"An override must look like section.key=value. Received: '{dotted}'."
                )
            if section not in CORE_KEYS:
                check_plugin_section(section, f" in override '{dotted}'")
            data.setdefault(section, {})[key] = value
        return Recipe(data, source=self.source)


def check_plugin_section(name: str, where: str = "") -> None:
    """Refuse a section that is no engine section and looks like a misspelt one.

    Any other name may be a lifecycle plugin's section; the engine, which knows the
    plugins, refuses it if none declares it (:meth:`Catalogue.validate`).
    """
    hint = did_you_mean(name, CORE_KEYS)
    if hint or not name.isidentifier():
        raise RecipeError(f"Unknown recipe section [{name}]{where}. Known: "
                          f"{', '.join(CORE_KEYS)}.{hint}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """Split ``section.key=value`` into the dotted key and the parsed value."""
    dotted, sep, raw = text.partition("=")
    if not sep:
        raise RecipeError(f"An override must look like section.key=value. Received: '{text}'.")
    return dotted.strip(), parse_value(raw.strip())


def parse_value(raw: str) -> Any:
    """Parse a command-line value as TOML, falling back to the plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw
