"""finetunekit: fine-tune pretrained image CNNs, every part of the recipe a plugin.

Public API (imported lazily, so ``finetunekit --help`` does not load Keras)::

    from finetunekit import Engine, Recipe, hookimpl
    engine = Engine(plugins=[my_plugin])
    run = engine.run(Recipe.from_toml("recipe.toml"))
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "hookimpl": "finetunekit.core.manager",
    "get_plugin_manager": "finetunekit.core.manager",
    "Engine": "finetunekit.core.engine",
    "Run": "finetunekit.core.training",
    "Recipe": "finetunekit.core.recipe",
    "Param": "finetunekit.core.params",
    "REQUIRED": "finetunekit.core.params",
    "Backbone": "finetunekit.core.components",
    "Strategy": "finetunekit.core.components",
    "Head": "finetunekit.core.components",
    "BuiltHead": "finetunekit.core.components",
    "Optimizer": "finetunekit.core.components",
    "Steps": "finetunekit.core.components",
    "Format": "finetunekit.core.components",
    "DataSource": "finetunekit.core.components",
    "Augmentation": "finetunekit.core.components",
    "Data": "finetunekit.core.components",
    "DataContext": "finetunekit.core.components",
    "Stage": "finetunekit.core.components",
    "Plan": "finetunekit.core.components",
    "PlanContext": "finetunekit.core.components",
    "FinetunekitError": "finetunekit.core.errors",
    "RecipeError": "finetunekit.core.errors",
    "UnknownComponentError": "finetunekit.core.errors",
    "PluginError": "finetunekit.core.errors",
    "WeightsError": "finetunekit.core.errors",
    "DataError": "finetunekit.core.errors",
    "PersistenceError": "finetunekit.core.errors",
    "ResourceError": "finetunekit.core.errors",
    "NonFiniteLossError": "finetunekit.core.errors",
    "Observer": "finetunekit.core.components",
    "Preprocess": "finetunekit.plugins.backbones.preprocess",
    "preprocessing": "finetunekit.plugins.backbones.preprocess",
    "freezing": "finetunekit.freezing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'finetunekit' has no attribute '{name}'")
    value = importlib.import_module(module)
    if name != "freezing":
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
