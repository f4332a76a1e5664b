"""The built-in head: pooling, optional hidden Dense layers, dropout, classifier.

The base's features are a feature map ``(height, width, channels)`` (a CNN), a token
sequence ``(tokens, dim)`` (a ViT-family transformer) or a vector ``(dim,)`` (a base that
pools itself, as SigLIP's attention-pooling head). ``pooling = "auto"`` picks what
fits: global average pooling of a map; of tokens, the class token when the base puts
``prefix_tokens`` (default 1) before the patch tokens, else the mean of the patch tokens;
a vector as it is.
Every pooling is made of core Keras layers, so a saved head loads in plain Keras.
"""

from __future__ import annotations

import keras

from finetunekit.core.components import BuiltHead, Head
from finetunekit.core.errors import RecipeError
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl

POOLING = {
    "flatten": keras.layers.Flatten,
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
}
"""Poolings of a feature map (``flatten`` also takes tokens)."""

TOKEN_POOLING = ("cls", "mean_tokens")
"""Poolings of tokens: the class token (the first), or the mean of the patch tokens."""


def pool_tokens(pooling: str, tokens: int, prefix_tokens: int) -> list:
    """Core Keras layers that pool ``(batch, tokens, dim)`` to ``(batch, dim)``.

    ``cls`` keeps token 0; ``mean_tokens`` averages the tokens after the first
    `prefix_tokens` (the class token, and any register tokens).
    """
    if pooling == "cls":
        return [keras.layers.Cropping1D((0, tokens - 1), name="cls_token"),
                keras.layers.Flatten(name="cls_pool")]
    return [keras.layers.Cropping1D((prefix_tokens, 0), name="patch_tokens"),
            keras.layers.GlobalAveragePooling1D(name="mean_tokens_pool")]


def pooling_layers(feature_shape, pooling: str, prefix_tokens: int) -> list:
    """The head's first layers for the base's `feature_shape` (without the batch axis).

    Raises:
        RecipeError: the pooling does not fit the features' rank.
    """
    if len(feature_shape) == 1:  # pooled already
        if pooling in ("auto", "flatten"):
            return []
        raise RecipeError(
            f"'head.pooling' = \"{pooling}\" does not fit this base, which outputs pooled "
            f"features of shape {list(feature_shape)}: there is nothing left to pool. "
            f"Received: head.pooling={pooling!r}. Use pooling = \"auto\".")
    tokens = len(feature_shape) == 2
    if pooling == "auto":
        pooling = ("cls" if prefix_tokens else "mean_tokens") if tokens else "avg"
    if pooling == "flatten":
        return [keras.layers.Flatten(name="flatten_pool")]
    if tokens != (pooling in TOKEN_POOLING):
        fits = ", ".join(TOKEN_POOLING) if tokens else ", ".join(POOLING)
        kind = "tokens (batch, tokens, dim)" if tokens else "a feature map (batch, h, w, c)"
        raise RecipeError(
            f"'head.pooling' = \"{pooling}\" does not fit this base, which outputs {kind} "
            f"of shape {list(feature_shape)}. Received: head.pooling={pooling!r}. Use one of: "
            f"auto, flatten, {fits}.")
    if tokens:
        if pooling == "cls" and not prefix_tokens:
            raise RecipeError(
                "'head.pooling' = \"cls\" needs a class token before the patch tokens. "
                "Received: head.prefix_tokens=0. Use pooling = \"mean_tokens\".")
        return pool_tokens(pooling, int(feature_shape[0]), prefix_tokens)
    return [POOLING[pooling](name=f"{pooling}_pool")]


def build_dense(feature_shape, pooling="auto", hidden=(), dropout=0.0, classes=1,
                activation="relu", prefix_tokens=1) -> BuiltHead:
    """Pool the base's features, then Dense layers; sigmoid for 1 class, softmax above."""
    layers = pooling_layers(tuple(feature_shape), pooling, prefix_tokens)
    for i, units in enumerate(hidden):
        layers.append(keras.layers.Dense(units, activation=activation, name=f"hidden_{i}"))
        if dropout:
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{i}"))
    if dropout and not hidden:
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    # float32 output keeps the loss stable under mixed precision
    if classes == 1:
        layers.append(keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="predictions"))
        loss, metrics = "binary_crossentropy", [keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        layers.append(keras.layers.Dense(classes, activation="softmax", dtype="float32", name="predictions"))
        loss, metrics = "sparse_categorical_crossentropy", [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return BuiltHead(layer=keras.Sequential(layers, name="head"), loss=loss, metrics=metrics)


@hookimpl
def finetunekit_register_heads(register):
    register(Head(
        name="dense", build=build_dense,
        params={
            "pooling": Param(str, "auto", choices=("auto", *POOLING, *TOKEN_POOLING),
                             help="auto (avg for a feature map, cls or mean_tokens for tokens), "
                                  "flatten, avg, max, cls or mean_tokens"),
            "prefix_tokens": Param(int, 1, min=0,
                                   help="tokens before the patch tokens (1: a class token, as "
                                        "in ViT); used only when the base outputs tokens"),
            "hidden": Param(list, [], items=int, min=1, help="units of each hidden Dense layer"),
            "dropout": Param(float, 0.0, min=0.0, max=0.95, help="dropout rate after each hidden layer"),
            "classes": Param(int, min=1, help="1 = binary (sigmoid); N >= 2 = softmax over N"),
            "activation": Param(str, "relu", help="activation of the hidden layers"),
        },
        description="Pooling, hidden Dense layers with dropout, sigmoid or softmax output.",
    ))
