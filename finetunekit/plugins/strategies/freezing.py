"""Freezing helpers: small functions a strategy is composed of (``finetunekit.freezing``).

Each takes "a layer or an iterable of layers" (or a base model and layer names) and
changes only ``trainable`` flags, or picks layer names for a :class:`~finetunekit.Stage`.
A strategy never compiles: the engine applies each stage and recompiles
(:mod:`finetunekit.core.stages`, whose primitives are re-exported here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from finetunekit.core.errors import RecipeError, did_you_mean
from finetunekit.core.stages import (
    apply_trainable,
    freeze,
    is_batch_norm,
    is_norm_parameter,
    make_trainable,
    trainable_param_count,
    variable_flags,
)

__all__ = [
    "apply_trainable", "block_index", "freeze", "group_blocks", "is_batch_norm", "is_bias",
    "is_norm_parameter", "last_blocks", "last_blocks_or_all", "layers_from", "make_trainable",
    "trainable_param_count", "variable_flags",
]


def is_bias(layer: Any, variable: Any) -> bool:
    """A variable filter: biases only."""
    return variable.path.rsplit("/", 1)[-1] == "bias"


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
