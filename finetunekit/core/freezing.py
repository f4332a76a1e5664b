"""Freezing helpers: small functions a strategy is composed of.

Each takes "a layer or an iterable of layers" (or a base model and layer names) and
changes only ``trainable`` flags. Keras 3 reads those flags when ``compile()`` runs, so
the engine recompiles after every change; a strategy never compiles.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import keras

from finetunekit.core.errors import RecipeError, did_you_mean


def _as_layers(layers: Any) -> list[Any]:
    if isinstance(layers, keras.layers.Layer):
        return [layers]
    return list(layers)


def is_batch_norm(layer: Any) -> bool:
    """Whether `layer` is a batch-normalisation layer (it keeps moving statistics)."""
    return isinstance(layer, keras.layers.BatchNormalization)


def freeze(layers: Any) -> None:
    """Make a layer or every layer of an iterable non-trainable."""
    for layer in _as_layers(layers):
        layer.trainable = False


def make_trainable(layers: Any, *, train_bn: bool = False) -> None:
    """Make a layer or layers trainable; BatchNorm layers only if `train_bn`.

    A frozen BatchNormalization layer runs in inference mode (it normalises with its
    moving statistics and does not update them), which is what fine-tuning usually wants.
    """
    for layer in _as_layers(layers):
        layer.trainable = train_bn or not is_batch_norm(layer)


def apply_trainable(base: Any, names: Iterable[str], *, train_bn: bool = False,
                    variables: Callable[[Any, Any], bool] | None = None,
                    original: Mapping[str, bool] | None = None) -> None:
    """Train exactly the base's top-level layers in `names`; freeze the rest.

    BatchNorm layers among `names` follow `train_bn`: if True they train whole (batch
    statistics, moving averages, gamma, beta), whatever `variables` says; if False they
    stay frozen in inference mode (moving statistics used and kept) and only the gamma
    and beta that `variables` picks train.

    Args:
        base: keras.Model. The base.
        names: iterable of str. Top-level layer names that train.
        train_bn: bool. Whether BatchNorm layers among them train.
        variables: callable or None. ``variables(layer, variable)`` picks which variables
            of a trainable layer train; None keeps each variable's own flag.
        original: mapping of variable path to its trainable flag before any strategy
            touched it, so one stage's variable choice does not leak into the next.

    Raises:
        ValueError: a name is not a top-level layer of `base`.
    """
    names = set(names)
    known = {layer.name for layer in base.layers}
    missing = sorted(names - known)
    if missing:
        raise ValueError(f"No layer named {missing} in base '{base.name}'.")
    base.trainable = True  # a frozen container would hide every inner flag
    for layer in base.layers:
        if layer.name not in names:
            freeze(layer)
            continue
        make_trainable(layer, train_bn=train_bn)
        batch_norm = is_batch_norm(layer)
        if batch_norm and layer.trainable:
            continue  # trains whole: the filter is about the other layers
        # Keras 3 sets every variable's flag with the layer's; put back each one's own
        # (a LoRA-frozen kernel stays frozen), then apply the stage's variable choice.
        for variable in layer.weights:
            flag = original.get(variable.path, True) if original else variable.trainable
            if batch_norm:
                # A frozen layer runs in inference mode, yet Keras still trains those of
                # its variables flagged trainable: gamma and beta move, statistics stay.
                flag = flag and variables is not None and is_norm_parameter(layer, variable)
            if variables is not None and flag:
                flag = bool(variables(layer, variable))
            variable.trainable = flag


def variable_flags(model: Any) -> dict[str, bool]:
    """Each variable's own trainable flag, by path (to restore between stages)."""
    return {variable.path: variable.trainable for variable in model.weights}


def is_bias(layer: Any, variable: Any) -> bool:
    """A variable filter: biases only."""
    return variable.path.rsplit("/", 1)[-1] == "bias"


def is_norm_parameter(layer: Any, variable: Any) -> bool:
    """A variable filter: gamma and beta of normalisation layers only."""
    norms = (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
             keras.layers.GroupNormalization)
    return isinstance(layer, norms) and variable.path.rsplit("/", 1)[-1] in ("gamma", "beta")


def trainable_param_count(model: Any) -> int:
    """Number of scalars in `model`'s trainable weights."""
    return int(sum(int(keras.ops.size(w)) for w in model.trainable_weights))


def layers_from(base: Any, start: int | str, *, key: str = "strategy.unfreeze_from") -> list[str]:
    """Names of the base's layers from `start` (an index as in ``base.layers[15:]``, or a
    layer name) to the end.

    Raises:
        RecipeError: the index is out of range or the name unknown; names `key`.
    """
    names = [layer.name for layer in base.layers]
    if isinstance(start, str):
        if start not in names:
            raise RecipeError(
                f"'{key}' names no layer of base '{base.name}'. Received: {key}={start!r}."
                f"{did_you_mean(start, names)} 'finetunekit describe' lists the layers."
            )
        return names[names.index(start):]
    if not -len(names) < start < len(names):
        raise RecipeError(
            f"'{key}' must be a layer index below {len(names)} (base '{base.name}' has "
            f"{len(names)} layers, 0-{len(names) - 1}). Received: {key}={start}."
        )
    return names[start:]


def last_blocks(blocks: Sequence[Sequence[str]], n: int, *, key: str = "strategy.unfreeze_blocks") -> list[str]:
    """Layer names of the last `n` blocks.

    Raises:
        RecipeError: `n` is not between 1 and the number of blocks; names `key`.
    """
    if not 1 <= n <= len(blocks):
        raise RecipeError(
            f"'{key}' must be between 1 and {len(blocks)} (this base has {len(blocks)} "
            f"blocks). Received: {key}={n}."
        )
    return [name for block in blocks[len(blocks) - n:] for name in block]


def last_blocks_or_all(blocks: Sequence[Sequence[str]], n: int | None, *,
                       key: str = "strategy.unfreeze_blocks") -> list[str]:
    """Layer names of the last `n` blocks, or of every block when `n` is None.

    Raises:
        RecipeError: `n` is not between 1 and the number of blocks; names `key`.
    """
    if n is None:
        return [name for block in blocks for name in block]
    return last_blocks(blocks, n, key=key)


def block_index(blocks: Sequence[Sequence[str]]) -> dict[str, int]:
    """Each layer name's block, counted from 0 at the stem."""
    return {name: index for index, block in enumerate(blocks) for name in block}


def group_blocks(names: Sequence[str], pattern: str | None) -> list[list[str]]:
    """Group layer names into ordered blocks by a regular expression.

    The key of a name is ``re.match(pattern, name).group(1)``; a name that does not
    match joins the current block (names before the first match form a stem block). A new
    block starts whenever the key changes. With no pattern, every layer is a block.
    """
    if pattern is None:
        return [[name] for name in names]
    regex = re.compile(pattern)
    blocks: list[list[str]] = []
    current_key: object = object()
    for name in names:
        match = regex.match(name)
        key = match.group(1) if match else None
        if not blocks or (key is not None and key != current_key):
            blocks.append([])
            if key is not None:
                current_key = key
        blocks[-1].append(name)
    return blocks
