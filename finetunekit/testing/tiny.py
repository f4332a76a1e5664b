"""Tiny recipes and data, and weight snapshots: the pieces every check builds on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from finetunekit.core.components import Data
from finetunekit.core.recipe import Recipe


SIZE = 32


def tiny_recipe(backbone: str | Mapping[str, Any] = "vgg16",
                strategy: str | Mapping[str, Any] = "feature_extraction",
                *, classes: int = 1, epochs: int = 1, batch_size: int = 4,
                optimizer: str | Mapping[str, Any] = "adam", learning_rate: float = 1e-3,
                **sections: Mapping[str, Any]) -> Recipe:
    """A recipe small enough for two CPU cores: 32x32 inputs and random weights.

    Args:
        backbone: str or dict. Backbone name, or keys merged into the tiny ``[backbone]``
            section (``{"weights": path}``).
        strategy: str or dict. Strategy name, or the whole ``[strategy]`` section.
        classes: int. ``head.classes``.
        epochs: int. ``train.epochs``.
        batch_size: int. ``data.batch_size``.
        optimizer: str or dict. ``optimizer.name``, or keys merged into ``[optimizer]``.
        learning_rate: float. ``optimizer.learning_rate``.
        **sections: extra keys merged into each named section.
    """
    strategy_section = dict(strategy) if isinstance(strategy, Mapping) else {"name": strategy}
    backbone_section = {"name": "vgg16", "weights": "none", "input_shape": [SIZE, SIZE, 3]}
    backbone_section.update(backbone if isinstance(backbone, Mapping) else {"name": backbone})
    data: dict[str, dict[str, Any]] = {
        "backbone": backbone_section,
        "strategy": strategy_section,
        "head": {"classes": classes},
        "optimizer": {"name": "adam", "learning_rate": learning_rate,
                      **(optimizer if isinstance(optimizer, Mapping) else {"name": optimizer})},
        "data": {"batch_size": batch_size},
        "train": {"epochs": epochs, "seed": 0},
    }
    for name, body in sections.items():
        data.setdefault(name, {}).update(body)
    return Recipe.from_dict(data)


def tiny_data(n: int = 8, classes: int = 1, size: int = SIZE, seed: int = 0) -> Data:
    """Random uint8 images and labels for a head with `classes` outputs."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = (np.arange(n) % (2 if classes == 1 else classes)).astype("int32")
    return Data(train=(x, y), validation=(x[: min(n, 4)], y[: min(n, 4)]))


def snapshot(layers: Iterable[Any]) -> dict[str, list[np.ndarray]]:
    """Copies of every weight (trainable or not, BatchNorm statistics too), by layer."""
    return {layer.name: [np.array(w.numpy(), copy=True) for w in layer.weights] for layer in layers}


def changed_layers(before: Mapping[str, list[np.ndarray]],
                   after: Mapping[str, list[np.ndarray]]) -> set[str]:
    """Layers any of whose weights differ in any bit between two snapshots."""
    return {
        name for name in before
        if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name]))
    }


def snapshot_variables(variables: Iterable[Any]) -> dict[str, np.ndarray]:
    """Copies of variables' values, by variable path."""
    return {v.path: np.array(v.numpy(), copy=True) for v in variables}
