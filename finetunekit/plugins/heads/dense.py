"""The built-in head: pooling, optional hidden Dense layers, dropout, classifier."""

from __future__ import annotations

import keras

from finetunekit.core.components import BuiltHead, Head
from finetunekit.core.params import Param
from finetunekit.core.manager import hookimpl

POOLING = {
    "flatten": keras.layers.Flatten,
    "avg": keras.layers.GlobalAveragePooling2D,
    "max": keras.layers.GlobalMaxPooling2D,
}


def build_dense(feature_shape, pooling="avg", hidden=(), dropout=0.0, classes=1,
                activation="relu") -> BuiltHead:
    """Pool the base's features, then Dense layers; sigmoid for 1 class, softmax above."""
    layers = [POOLING[pooling](name=f"{pooling}_pool")]
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
            "pooling": Param(str, "avg", choices=tuple(POOLING), help="flatten, avg or max"),
            "hidden": Param(list, [], items=int, min=1, help="units of each hidden Dense layer"),
            "dropout": Param(float, 0.0, min=0.0, max=0.95, help="dropout rate after each hidden layer"),
            "classes": Param(int, min=1, help="1 = binary (sigmoid); N >= 2 = softmax over N"),
            "activation": Param(str, "relu", help="activation of the hidden layers"),
        },
        description="Pooling, hidden Dense layers with dropout, sigmoid or softmax output.",
    ))
